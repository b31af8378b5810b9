/**
 * A Roaring bitmap of u32 block numbers in plain TypeScript: the
 * native-free twin of src/storage/roaring-bitmap.ts. Serializes to, and
 * reads, the same portable Roaring format as CRoaring (native-free/roaring-format.ts).
 */
import { BlockrepError } from '../src/util/errors.js'
import type { BlockBitmap } from '../src/storage/types.js'
import { Kind, cAdd, cAddRange, cClone, cHas, cMemoryBytes, cOr, cRemove, cRemoveRange, cWrite, rangeContainer } from './roaring-containers.js'
import type { Container } from './roaring-containers.js'
import { parsePortable, serializePortable } from './roaring-format.js'

const U32_LIMIT = 0x1_0000_0000

/** Throws ERR_OUT_OF_RANGE unless block is a u32. */
export function checkBlock(block: number): void {
  if ((block >>> 0) !== block) {
    throw new BlockrepError('ERR_OUT_OF_RANGE', `block ${block} is not a u32`, { context: { block } })
  }
}

/** Throws ERR_OUT_OF_RANGE unless [start, end) lies within [0, 2^32). */
export function checkRange(start: number, end: number): void {
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > U32_LIMIT) {
    throw new BlockrepError('ERR_OUT_OF_RANGE', `range [${start}, ${end}) is not within u32`, { context: { start, end } })
  }
}

export class NativeFreeBitmap implements BlockBitmap {
  /** High 16 bits of each container, ascending; parallel to `conts`. */
  private keys: number[] = []
  private conts: Container[] = []
  private count = 0

  /** Builds from a validated portable buffer (throws BlockrepError ERR_BITMAP_FORMAT). */
  static deserialize(buf: Buffer): NativeFreeBitmap {
    const p = parsePortable(buf)
    const b = new NativeFreeBitmap()
    b.keys = p.keys
    b.conts = p.containers
    b.count = p.size
    return b
  }

  static from(blocks?: Iterable<number>): NativeFreeBitmap {
    const b = new NativeFreeBitmap()
    if (blocks !== undefined) for (const x of blocks) b.add(x)
    return b
  }

  get size(): number {
    return this.count
  }

  isEmpty(): boolean {
    return this.count === 0
  }

  /** Index of key, or -(insertion point) - 1. */
  private find(key: number): number {
    const k = this.keys
    let lo = 0
    let hi = k.length - 1
    // appends and repeated keys are the common case when dirtying blocks in order
    if (hi >= 0 && k[hi] < key) return -k.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const v = k[mid]
      if (v < key) lo = mid + 1
      else if (v > key) hi = mid - 1
      else return mid
    }
    return -lo - 1
  }

  /** Puts `c` (or nothing) at index i, keeping `count` right. */
  private replace(i: number, before: number, c: Container | null): void {
    if (c === null) {
      this.keys.splice(i, 1)
      this.conts.splice(i, 1)
      this.count -= before
    } else {
      this.conts[i] = c
      this.count += c.card - before
    }
  }

  private insert(i: number, key: number, c: Container): void {
    this.keys.splice(i, 0, key)
    this.conts.splice(i, 0, c)
    this.count += c.card
  }

  has(block: number): boolean {
    if ((block >>> 0) !== block) return false
    const i = this.find(block >>> 16)
    return i >= 0 && cHas(this.conts[i], block & 0xffff)
  }

  add(block: number): void {
    checkBlock(block)
    const i = this.find(block >>> 16)
    if (i >= 0) {
      const c = this.conts[i]
      this.replace(i, c.card, cAdd(c, block & 0xffff))
    } else {
      this.insert(-i - 1, block >>> 16, rangeContainer(block & 0xffff, block & 0xffff))
    }
  }

  /** First index whose key is >= key. */
  private lowerBound(key: number): number {
    const i = this.find(key)
    return i >= 0 ? i : -i - 1
  }

  addRange(start: number, end: number): void {
    checkRange(start, end)
    if (end <= start) return
    const first = start >>> 16
    const lastKey = (end - 1) >>> 16
    const i0 = this.lowerBound(first)
    const i1 = this.lowerBound(lastKey + 1)
    // one rebuilt segment instead of a splice per key: a range over many containers stays linear
    const segKeys: number[] = []
    const segConts: Container[] = []
    let i = i0
    for (let key = first; key <= lastKey; key++) {
      const lo = key === first ? start & 0xffff : 0
      const hi = key === lastKey ? (end - 1) & 0xffff : 0xffff
      let c: Container
      if (i < i1 && this.keys[i] === key) {
        const old = this.conts[i++]
        const before = old.card
        c = cAddRange(old, lo, hi)
        this.count += c.card - before
      } else {
        c = rangeContainer(lo, hi)
        this.count += c.card
      }
      segKeys.push(key)
      segConts.push(c)
    }
    if (i1 - i0 === segKeys.length) {
      for (let k = 0; k < segKeys.length; k++) this.conts[i0 + k] = segConts[k]
    } else {
      this.keys = this.keys.slice(0, i0).concat(segKeys, this.keys.slice(i1))
      this.conts = this.conts.slice(0, i0).concat(segConts, this.conts.slice(i1))
    }
  }

  remove(block: number): void {
    if ((block >>> 0) !== block) return
    const i = this.find(block >>> 16)
    if (i < 0) return
    const c = this.conts[i]
    this.replace(i, c.card, cRemove(c, block & 0xffff))
  }

  removeRange(start: number, end: number): void {
    checkRange(start, end)
    if (end <= start) return
    const first = start >>> 16
    const lastKey = (end - 1) >>> 16
    const i0 = this.lowerBound(first)
    const i1 = this.lowerBound(lastKey + 1)
    // compact the kept containers in place, then drop the tail of the segment in one splice
    let w = i0
    for (let i = i0; i < i1; i++) {
      const key = this.keys[i]
      const lo = key === first ? start & 0xffff : 0
      const hi = key === lastKey ? (end - 1) & 0xffff : 0xffff
      const c = this.conts[i]
      const before = c.card
      const next = lo === 0 && hi === 0xffff ? null : cRemoveRange(c, lo, hi)
      this.count -= before - (next === null ? 0 : next.card)
      if (next !== null) {
        this.keys[w] = key
        this.conts[w++] = next
      }
    }
    if (w < i1) {
      this.keys.splice(w, i1 - w)
      this.conts.splice(w, i1 - w)
    }
  }

  clear(): void {
    this.keys = []
    this.conts = []
    this.count = 0
  }

  orInPlace(other: BlockBitmap): void {
    const o = other instanceof NativeFreeBitmap ? other : NativeFreeBitmap.deserialize(other.serialize())
    if (o === this) return
    const keys: number[] = []
    const conts: Container[] = []
    let count = 0
    let i = 0
    let j = 0
    const ak = this.keys
    const bk = o.keys
    while (i < ak.length || j < bk.length) {
      let c: Container
      let key: number
      if (j >= bk.length || (i < ak.length && ak[i] < bk[j])) {
        key = ak[i]
        c = this.conts[i++]
      } else if (i >= ak.length || bk[j] < ak[i]) {
        key = bk[j]
        c = cClone(o.conts[j++])
      } else {
        key = ak[i]
        c = cOr(this.conts[i++], o.conts[j++])
      }
      keys.push(key)
      conts.push(c)
      count += c.card
    }
    this.keys = keys
    this.conts = conts
    this.count = count
  }

  clone(): NativeFreeBitmap {
    const b = new NativeFreeBitmap()
    b.keys = this.keys.slice()
    b.conts = this.conts.map(cClone)
    b.count = this.count
    return b
  }

  *[Symbol.iterator](): Iterator<number> {
    // one generator with the container loops inlined: a nested generator per container costs ~2x
    for (let k = 0; k < this.keys.length; k++) {
      const high = this.keys[k] * 65536
      const c = this.conts[k]
      if (c.kind === Kind.ARRAY) {
        const v = c.vals
        for (let i = 0; i < c.card; i++) yield high + v[i]
      } else if (c.kind === Kind.BITSET) {
        const w = c.words
        for (let i = 0; i < 2048; i++) {
          let x = w[i]
          while (x !== 0) {
            const t = x & -x
            yield high + ((i << 5) | (31 - Math.clz32(t)))
            x ^= t
          }
        }
      } else {
        const r = c.runs
        for (let i = 0; i < c.n; i++) {
          const e = high + r[2 * i] + r[2 * i + 1]
          for (let v = high + r[2 * i]; v <= e; v++) yield v
        }
      }
    }
  }

  toArray(): number[] {
    const out = new Array<number>(this.count)
    let pos = 0
    for (let k = 0; k < this.keys.length; k++) pos = cWrite(this.conts[k], this.keys[k] * 65536, out, pos)
    return out
  }

  serialize(): Buffer {
    return serializePortable(this.keys, this.conts)
  }

  /** Container payloads at capacity, plus measured V8 overhead per container (key list included). */
  memoryBytes(): number {
    let bytes = 64 + 16 * this.keys.length
    for (const c of this.conts) bytes += cMemoryBytes(c)
    return bytes
  }

  /** Container counts by kind; for benchmarks and tests. */
  stats(): { arrays: number; bitsets: number; runs: number } {
    const s = { arrays: 0, bitsets: 0, runs: 0 }
    for (const c of this.conts) {
      if (c.kind === Kind.ARRAY) s.arrays++
      else if (c.kind === Kind.BITSET) s.bitsets++
      else s.runs++
    }
    return s
  }
}
