import type { FrameTransport } from '../wire/transport.js'
import type { Frame } from '../wire/messages.js'
import type { NodeStore } from './node-store.js'
import { rangeDigests } from './resync-sender.js'
import { BlockrepError } from '../util/errors.js'
import type { ProgressFigures } from './status-types.js'

export interface VerifyOutcome {
  blocksCompared: number
  differingBlocks: number[]
  seconds: number
}

export type VerifyProgress = ProgressFigures

/** Ranges that differ are compared again this many times (after the standby caught up) before being reported. */
const RECHECKS = 3

/**
 * Online verify over a streaming link: the standby digests ranges of its data
 * (DIGEST_REQ/RESP, SHA-256 per range), the primary compares them with its
 * own, then narrows differing ranges down to single blocks. A range written
 * while being compared can differ for a moment, so a difference is reported
 * only if it is still there after the standby has caught up, `RECHECKS` times.
 */
export class Verifier {
  private waiters = new Map<number, (f: Frame | Error) => void>()
  private id = 0
  private aborted: Error | null = null
  readonly progress: VerifyProgress

  constructor(
    private readonly t: FrameTransport,
    private readonly store: NodeStore,
    private readonly rangeBlocks: number,
    /** resolves once the standby has durably applied everything up to the primary's head now */
    private readonly caughtUp: () => Promise<void>,
  ) {
    this.progress = { blocksTotal: store.blocks, blocksDone: 0, bytesDone: 0, startedAt: Date.now(), rateBytesPerSec: 0, etaSeconds: null }
  }

  handle(f: Frame): boolean {
    if (f.msg.type !== 'DIGEST_RESP') return false
    const w = this.waiters.get(f.msg.id)
    if (w) {
      this.waiters.delete(f.msg.id)
      w(f)
    }
    return true
  }

  abort(err: Error): void {
    this.aborted = err
    for (const w of this.waiters.values()) w(err)
    this.waiters.clear()
  }

  async run(): Promise<VerifyOutcome> {
    const total = this.store.blocks
    const rb = this.rangeBlocks
    // ~8 MiB digested per request: both sides hash synchronously
    const batch = rb * Math.max(1, Math.floor((8 * 1024 * 1024) / (rb * this.store.meta.blockSize)))
    let suspects: number[] = []
    for (let block = 0; block < total; block += batch) {
      const count = Math.min(batch, total - block)
      suspects.push(...(await this.compare(block, count, rb)))
      this.tick(count)
    }
    // narrow suspects (ranges) to blocks, re-checking after the standby caught up
    let blocks: number[] = []
    for (const start of suspects) {
      const n = Math.min(rb, total - start)
      blocks.push(...(await this.compare(start, n, 1)))
    }
    for (let i = 0; i < RECHECKS && blocks.length > 0; i++) {
      await this.caughtUp()
      const again: number[] = []
      for (const b of blocks) again.push(...(await this.compare(b, 1, 1)))
      blocks = again
    }
    suspects = []
    return { blocksCompared: total, differingBlocks: blocks, seconds: (Date.now() - this.progress.startedAt) / 1000 }
  }

  /** First blocks of the ranges of `rb` blocks in [block, block+count) whose digests differ. */
  private async compare(block: number, count: number, rb: number): Promise<number[]> {
    // the link dropped (maybe while we waited for the standby to catch up): no reply would ever come
    if (this.aborted) throw this.aborted
    const id = ++this.id
    const reply = new Promise<Frame | Error>((resolve) => this.waiters.set(id, resolve))
    this.t.send({ type: 'DIGEST_REQ', id, block, count, rangeBlocks: rb })
    const ours = rangeDigests(this.store, block, count, rb)
    const f = await reply
    if (f instanceof Error) throw f
    if (f.msg.type !== 'DIGEST_RESP' || f.payload.length !== ours.length) {
      throw new BlockrepError('ERR_PROTOCOL', 'malformed DIGEST_RESP during verify')
    }
    const out: number[] = []
    for (let i = 0, b = block; b < block + count; i++, b += rb) {
      if (!ours.subarray(i * 32, i * 32 + 32).equals(f.payload.subarray(i * 32, i * 32 + 32))) out.push(b)
    }
    return out
  }

  private tick(blocks: number): void {
    const p = this.progress
    p.blocksDone += blocks
    p.bytesDone += blocks * this.store.meta.blockSize
    const secs = (Date.now() - p.startedAt) / 1000
    p.rateBytesPerSec = secs > 0 ? Math.round(p.bytesDone / secs) : 0
    p.etaSeconds = p.rateBytesPerSec > 0 ? Math.round(((p.blocksTotal - p.blocksDone) * this.store.meta.blockSize) / p.rateBytesPerSec) : null
  }
}
