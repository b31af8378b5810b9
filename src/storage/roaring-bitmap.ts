/**
 * BlockBitmap over CRoaring (the `roaring` addon's RoaringBitmap32).
 * runOptimize is never called implicitly; CRoaring's addRange makes run
 * containers by itself, and the portable format carries them.
 */
import { createRequire } from 'node:module'
import type { RoaringBitmap32 } from 'roaring'
import { BlockrepError } from '../util/errors.js'
import { checkBlock, checkRange } from '../../native-free/bitmap.js'
import { parsePortable } from '../../native-free/roaring-format.js'
import type { BlockBitmap } from './types.js'

type RoaringClass = typeof RoaringBitmap32
let loaded: RoaringClass | Error | undefined

/**
 * The addon, loaded on first use rather than at import, so that native-free
 * installs (no compiled addon) can import this module and pick the fallback.
 */
export function roaringAddon(): RoaringClass | null {
  if (loaded === undefined) {
    try {
      loaded = (createRequire(import.meta.url)('roaring') as { RoaringBitmap32: RoaringClass }).RoaringBitmap32
    } catch (err) {
      loaded = err instanceof Error ? err : new Error(String(err))
    }
  }
  return loaded instanceof Error ? null : loaded
}

function roaringClass(): RoaringClass {
  const r = roaringAddon()
  if (r === null) throw new Error('the roaring addon is not available', { cause: loaded })
  return r
}

/** CRoaring's per-container cost besides the payload: key, typecode and pointer in the top array, the container struct, two malloc headers. */
const CONTAINER_OVERHEAD = 48

export class NativeBitmap implements BlockBitmap {
  private readonly rb: RoaringBitmap32

  constructor(rb?: RoaringBitmap32) {
    this.rb = rb ?? new (roaringClass())()
  }

  static from(blocks?: Iterable<number>): NativeBitmap {
    const b = new NativeBitmap()
    if (blocks !== undefined) for (const x of blocks) b.add(x)
    return b
  }

  /**
   * roaring's portable reader only checks that it does not read past the
   * buffer; it trusts sorted values, run bounds and cardinalities, and reads
   * an empty buffer as an empty set. So the buffer is first validated (and
   * its exact length checked) by the strict reader shared with native-free.
   */
  static deserialize(buf: Buffer): NativeBitmap {
    const { size } = parsePortable(buf, false)
    const view: Uint8Array = buf
    let rb: RoaringBitmap32
    try {
      rb = roaringClass().deserialize(view, 'portable')
    } catch (err) {
      throw new BlockrepError('ERR_BITMAP_FORMAT', 'roaring bitmap: CRoaring refused the buffer', {
        cause: err,
        context: { byteLength: view.length },
      })
    }
    if (rb.size !== size) {
      throw new BlockrepError('ERR_BITMAP_FORMAT', 'roaring bitmap: cardinality differs after reading', {
        context: { byteLength: view.length, expected: size, actual: rb.size },
      })
    }
    return new NativeBitmap(rb)
  }

  get size(): number {
    return this.rb.size
  }

  isEmpty(): boolean {
    return this.rb.isEmpty
  }

  has(block: number): boolean {
    return (block >>> 0) === block && this.rb.has(block)
  }

  add(block: number): void {
    checkBlock(block)
    this.rb.add(block)
  }

  addRange(start: number, end: number): void {
    checkRange(start, end)
    if (end > start) this.rb.addRange(start, end)
  }

  remove(block: number): void {
    if ((block >>> 0) === block) this.rb.remove(block)
  }

  removeRange(start: number, end: number): void {
    checkRange(start, end)
    if (end > start) this.rb.removeRange(start, end)
  }

  clear(): void {
    this.rb.clear()
  }

  orInPlace(other: BlockBitmap): void {
    const o = other instanceof NativeBitmap ? other : NativeBitmap.deserialize(other.serialize())
    this.rb.orInPlace(o.rb)
  }

  clone(): NativeBitmap {
    return new NativeBitmap(this.rb.clone())
  }

  [Symbol.iterator](): Iterator<number> {
    return this.rb[Symbol.iterator]()
  }

  toArray(): number[] {
    return this.rb.toArray()
  }

  serialize(): Buffer {
    const out = this.rb.serialize('portable')
    return Buffer.isBuffer(out) ? out : Buffer.from(out.buffer, out.byteOffset, out.byteLength)
  }

  /**
   * Container payloads as CRoaring reports them, plus its per-container
   * bookkeeping. CRoaring grows array containers by 1.25-2x and does not
   * report capacity, so an eighth of the array payload is added as the
   * expected slack; scripts/bench-bitmap.ts compares this against the
   * addon's own allocation counter.
   */
  memoryBytes(): number {
    const s = this.rb.statistics()
    const payload = s.bytesInArrayContainers + s.bytesInBitsetContainers + s.bytesInRunContainers
    return 64 + payload + Math.ceil(s.bytesInArrayContainers / 8) + s.containers * CONTAINER_OVERHEAD
  }

  /** Container counts by kind; for benchmarks and tests. */
  stats(): { arrays: number; bitsets: number; runs: number } {
    const s = this.rb.statistics()
    return { arrays: s.arrayContainers, bitsets: s.bitsetContainers, runs: s.runContainers }
  }
}
