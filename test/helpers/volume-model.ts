import { readFileSync } from 'node:fs'
import type { NbdClient } from '../../src/client/nbd-client.js'
import { rng } from './seed.js'

/**
 * A model of what a client wrote to a volume, to check a node's data file
 * against what the client was told, not just against another node (a
 * corruption on the primary that replicates would pass a primary/standby
 * comparison). Per block it keeps every content the block may hold: the last
 * acknowledged one, plus those of writes still in flight or that failed
 * (their outcome is unknown). Two writes to the same block are never in
 * flight together, so an acknowledged write is the block's content.
 */
export class VolumeModel {
  /** block -> possible contents (absent: only zeros) */
  private readonly possible = new Map<number, Buffer[]>()
  private readonly busy = new Map<number, Promise<void>>()
  private counter = 0
  acked = 0
  failed = 0

  constructor(
    readonly size: number,
    readonly blockSize = 4096,
  ) {}

  get blocks(): number {
    return this.size / this.blockSize
  }

  /** A block's content unique to this write: block number and write counter, then a pattern. */
  content(block: number): Buffer {
    const n = ++this.counter
    const b = Buffer.alloc(this.blockSize, (block * 31 + n * 7) & 0xff)
    b.writeUInt32BE(block, 0)
    b.writeUInt32BE(n, 4)
    return b
  }

  /** Writes one block through `c` and records the outcome; rejects like the client does. */
  async write(c: NbdClient, block: number, data = this.content(block)): Promise<void> {
    while (this.busy.has(block)) await this.busy.get(block)
    const before = this.possible.get(block) ?? [Buffer.alloc(this.blockSize)]
    this.possible.set(block, [...before, data])
    const p = c.write(block * this.blockSize, data).then(
      () => {
        this.possible.set(block, [data])
        this.acked++
      },
      (err: unknown) => {
        this.failed++
        throw err
      },
    )
    const settled = p.then(() => {}, () => {}).finally(() => this.busy.delete(block))
    this.busy.set(block, settled)
    await p
  }

  /** `count` writes of one block at seeded random blocks, `depth` in flight; failures are counted, not thrown. */
  async randomWrites(c: NbdClient, count: number, seed: number, depth = 16): Promise<Set<number>> {
    const r = rng(seed)
    const touched = new Set<number>()
    const inflight = new Set<Promise<void>>()
    for (let i = 0; i < count; i++) {
      const block = Math.floor(r() * this.blocks)
      touched.add(block)
      const p: Promise<void> = this.write(c, block).catch(() => {}).finally(() => inflight.delete(p))
      inflight.add(p)
      if (inflight.size >= depth) await Promise.race(inflight)
    }
    await Promise.all(inflight)
    return touched
  }

  /** Blocks of `file` whose content is none of what the model allows (all blocks, untouched ones must be zero). */
  mismatches(file: string): number[] {
    const data = readFileSync(file)
    const bad: number[] = []
    if (data.length < this.size) return [-1]
    const zero = Buffer.alloc(this.blockSize)
    for (let b = 0; b < this.blocks; b++) {
      const got = data.subarray(b * this.blockSize, (b + 1) * this.blockSize)
      const allowed = this.possible.get(b) ?? [zero]
      if (!allowed.some((x) => x.equals(got))) bad.push(b)
    }
    return bad
  }

  /** A short description of mismatches for an assertion message. */
  describe(file: string): string {
    const bad = this.mismatches(file)
    return bad.length === 0 ? 'matches what the client wrote' : `${bad.length} block(s) differ from what the client wrote, first ${bad.slice(0, 8).join(', ')}`
  }
}
