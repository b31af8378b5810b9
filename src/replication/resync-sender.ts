import { createHash } from 'node:crypto'
import type { FrameTransport } from '../wire/transport.js'
import type { Frame } from '../wire/messages.js'
import { MAX_BLOCK_RUNS, encodeRuns } from '../wire/messages.js'
import type { BlockBitmap } from '../storage/types.js'
import type { NodeStore } from './node-store.js'
import type { WritePath } from './write-path.js'
import { addEntries, journalGap } from './facts.js'
import { crc32c } from '../util/crc32c.js'
import { BlockrepError } from '../util/errors.js'
import type { Logger } from '../util/log.js'

export interface ResyncTunables {
  windowBytes: number
  headDeltaMaxBytes: number
  roundShrinkRatio: number
  throttleWritesMiBps: number
  digestRangeBlocks: number
  maxRounds: number
  /** resync send rate limit, MiB/s; 0 = unlimited */
  resyncMaxMiBps: number
}

export interface ResyncProgressSink {
  /** `frozenSeq`: the primary head the round's set was frozen at */
  begin(round: number, mode: 'BITMAP' | 'FULL', blocksTotal: number, frozenSeq?: number): void
  blocksDone(blocks: number, bytes: number): void
}

/** Bytes of data digested per DIGEST_REQ in a checksum FULL. */
const DIGEST_BATCH_BYTES = 8 * 1024 * 1024

/** Most block data sent in one BLOCKS frame. */
const MAX_RUN_BYTES = 1024 * 1024

/** Splits ascending block numbers into runs of contiguous blocks no longer than `max`. */
export function* runs(blocks: Iterable<number>, max: number): Generator<[number, number]> {
  let start = -1
  let count = 0
  for (const b of blocks) {
    if (count > 0 && b === start + count && count < max) {
      count++
      continue
    }
    if (count > 0) yield [start, count]
    start = b
    count = 1
  }
  if (count > 0) yield [start, count]
}

/**
 * Primary side of BITMAP and FULL resync, in rounds (DESIGN "Bitmap rounds"):
 * freeze B_k and g_k; send every block of B_k with its current content in a
 * bounded window; then replay (g_k, head] as HEAD_DELTA when small enough, or
 * turn it into B_{k+1}. Rounds whose gap does not shrink throttle client
 * writes so they converge. Returns the seq from which streaming continues.
 */
export class ResyncSender {
  private applied = 0
  private sentBlocks = 0
  private waiter: (() => void) | null = null
  private digestWaiters = new Map<number, (f: Frame) => void>()
  private digestId = 0
  private closedErr: Error | null = null
  round = 0

  constructor(
    private readonly t: FrameTransport,
    private readonly store: NodeStore,
    private readonly wp: WritePath,
    private readonly tun: ResyncTunables,
    private readonly progress: ResyncProgressSink,
    private readonly log: Logger,
    private readonly peerId: string,
  ) {}

  /** Frames from the standby during the resync. */
  handle(f: Frame): boolean {
    if (f.msg.type === 'BLOCKS_ACK') {
      if (f.msg.round === this.round) this.applied = f.msg.applied
      this.wake()
      return true
    }
    if (f.msg.type === 'DIGEST_RESP') {
      const w = this.digestWaiters.get(f.msg.id)
      if (w) {
        this.digestWaiters.delete(f.msg.id)
        w(f)
      }
      return true
    }
    return false
  }

  /** The connection ended: every wait fails. */
  abort(err: Error): void {
    this.closedErr = err
    this.wake()
    for (const w of this.digestWaiters.values()) w({ msg: { type: 'PING', t: 0 }, payload: Buffer.alloc(0) })
    this.digestWaiters.clear()
  }

  /**
   * Runs rounds from `initial` (null = every block, FULL) until the standby can
   * stream; returns g of the last round. `coveredSeq` is the primary head the
   * initial set was computed at: round 1 freezes there, so writes made since
   * the decision fall into its gap instead of being missed.
   */
  async run(initial: BlockBitmap | null, mode: 'BITMAP' | 'FULL', checksum: boolean, coveredSeq: number): Promise<number> {
    const store = this.store
    let frozen = coveredSeq
    this.freeze(frozen)
    let set: BlockBitmap | null = initial
    if (mode === 'FULL' && checksum) {
      set = await this.differingBlocks()
    }
    let lastGap = Infinity
    for (;;) {
      this.round++
      const total = set ? set.size : store.blocks
      this.progress.begin(this.round, mode, total, frozen)
      this.t.send({ type: 'ROUND_BEGIN', round: this.round, mode, blocks: total, frozenSeq: frozen, bitmap: set ? set.serialize() : null })
      await this.sendBlocks(set ?? fullRange(store))
      this.t.send({ type: 'ROUND_END', round: this.round })
      await this.until(() => this.applied >= this.sentBlocks)
      const head = store.journal.headSeq
      const gap = journalGap(store, frozen)
      this.log.info({ peer: this.peerId, round: this.round, blocks: total, frozenSeq: frozen, head, gapRecords: head - frozen, gapBytes: gap?.bytes ?? null }, 'resync round drained')
      if (gap && gap.bytes <= this.tun.headDeltaMaxBytes) return frozen
      const records = head - frozen
      if (this.round >= this.tun.maxRounds || records > lastGap * this.tun.roundShrinkRatio) {
        this.wp.setThrottle(this.peerId, this.tun.throttleWritesMiBps * 1024 * 1024)
      }
      lastGap = records
      // B_{k+1}: blocks of (g_k, head]: the journal's records, and where it wrapped, the blocks of the
      // records it reclaimed since the freeze (not the peer's whole dirty bitmap: that would resend
      // everything since its old acked seq every round and never converge)
      set = store.bitmaps().create()
      if (store.journal.tailSeq <= frozen + 1) {
        addEntries(store, set, frozen + 1, head)
      } else if (this.evictedSinceFreeze) {
        set.orInPlace(this.evictedSinceFreeze)
        addEntries(store, set, store.journal.tailSeq, head)
      } else {
        // records after g_k were gone before tracking began: the peer's dirty bitmap is a superset
        set.orInPlace(store.peer(this.peerId).dirty)
        addEntries(store, set, store.journal.tailSeq, head)
      }
      frozen = head
      this.freeze(frozen)
      mode = 'BITMAP'
    }
  }

  private async sendBlocks(set: Iterable<number>): Promise<void> {
    const bs = this.store.meta.blockSize
    this.applied = 0
    this.sentBlocks = 0
    const maxBlocks = Math.max(1, Math.floor(MAX_RUN_BYTES / bs))
    const windowBlocks = Math.max(maxBlocks, Math.floor(this.tun.windowBytes / bs))
    let frame: [number, number][] = []
    let frameBlocks = 0
    for (const run of runs(set, maxBlocks)) {
      // many scattered runs travel in one frame: per-frame costs dominate a sparse bitmap
      if (frameBlocks + run[1] > maxBlocks || frame.length === MAX_BLOCK_RUNS) {
        await this.sendFrame(frame, frameBlocks, windowBlocks)
        frame = []
        frameBlocks = 0
      }
      frame.push(run)
      frameBlocks += run[1]
    }
    if (frame.length) await this.sendFrame(frame, frameBlocks, windowBlocks)
  }

  private async sendFrame(frame: [number, number][], blocks: number, windowBlocks: number): Promise<void> {
    const bs = this.store.meta.blockSize
    if (this.tun.resyncMaxMiBps > 0) await this.pace(blocks * bs)
    if (this.sentBlocks - this.applied + blocks > windowBlocks) {
      await this.until(() => this.sentBlocks - this.applied + blocks <= windowBlocks)
    }
    this.check()
    // read the current content right before sending: a write racing this read is in (g_k, head] and replayed after
    const data = Buffer.allocUnsafe(blocks * bs)
    let at = 0
    for (const [block, count] of frame) {
      this.store.volume.readInto(data.subarray(at, at + count * bs), block * bs)
      at += count * bs
    }
    const ok = this.t.send({ type: 'BLOCKS', round: this.round, runs: encodeRuns(frame), crc: crc32c(data) }, data)
    this.sentBlocks += blocks
    this.progress.blocksDone(blocks, data.length)
    if (!ok) await this.t.drained()
  }

  /** Checksum FULL: compare per-range digests with the standby; only differing ranges' blocks are sent. */
  private async differingBlocks(): Promise<BlockBitmap> {
    const store = this.store
    const out = store.bitmaps().create()
    const rb = this.tun.digestRangeBlocks
    // digests are computed synchronously on both sides: keep each request small (~8 MiB) so
    // neither event loop stalls long enough to miss heartbeats
    const batch = rb * Math.max(1, Math.floor(DIGEST_BATCH_BYTES / (rb * store.meta.blockSize)))
    const pending: Promise<void>[] = []
    try {
      for (let block = 0; block < store.blocks; block += batch) {
        const count = Math.min(batch, store.blocks - block)
        pending.push(this.compareBatch(block, count, rb, out))
        if (pending.length >= 4) await pending.shift()
      }
      await Promise.all(pending)
    } finally {
      // when one comparison fails (the link dropped) the others fail too: nothing may reject unobserved
      for (const p of pending) p.catch(() => {})
    }
    this.log.info({ peer: this.peerId, differing: out.size, total: store.blocks }, 'checksum comparison done')
    return out
  }

  private async compareBatch(block: number, count: number, rb: number, out: BlockBitmap): Promise<void> {
    for (const start of await this.differingRanges(block, count, rb)) {
      const n = Math.min(rb, block + count - start)
      // narrow a differing range down to its blocks: only those cross the wire
      for (const b of rb > 1 ? await this.differingRanges(start, n, 1) : [start]) out.add(b)
    }
    this.progress.blocksDone(0, 0)
  }

  /** First blocks of the ranges of `rb` blocks in [block, block+count) whose digests differ from the standby's. */
  private async differingRanges(block: number, count: number, rb: number): Promise<number[]> {
    const id = ++this.digestId
    const reply = new Promise<Frame>((resolve) => this.digestWaiters.set(id, resolve))
    this.t.send({ type: 'DIGEST_REQ', id, block, count, rangeBlocks: rb })
    const ours = rangeDigests(this.store, block, count, rb)
    const f = await reply
    this.check()
    if (f.msg.type !== 'DIGEST_RESP' || f.payload.length !== ours.length) throw new BlockrepError('ERR_PROTOCOL', 'malformed DIGEST_RESP')
    const out: number[] = []
    for (let i = 0, b = block; b < block + count; i++, b += rb) {
      if (!ours.subarray(i * 32, i * 32 + 32).equals(f.payload.subarray(i * 32, i * 32 + 32))) out.push(b)
    }
    return out
  }

  /** Blocks of journal records reclaimed since the last freeze g_k with seq > g_k; null when tracking started too late. */
  private evictedSinceFreeze: BlockBitmap | null = null
  private frozenSeq = 0

  /** Starts tracking reclaimed records after `seq` (the round's g_k). */
  private freeze(seq: number): void {
    this.frozenSeq = seq
    // records after g_k already reclaimed before this point would be missing from the tracking
    this.evictedSinceFreeze = this.store.journal.tailSeq <= seq + 1 ? this.store.bitmaps().create() : null
  }

  /** The write path is about to reclaim these journal records (invariant 1 hook). */
  noteEvicted(evicted: readonly { seq: number; offset: number; length: number }[]): void {
    const bm = this.evictedSinceFreeze
    if (!bm) return
    const bs = this.store.meta.blockSize
    for (const e of evicted) {
      if (e.seq > this.frozenSeq && e.length > 0) bm.addRange(Math.floor(e.offset / bs), Math.ceil((e.offset + e.length) / bs))
    }
  }

  private paceNext = 0

  /** Keeps the resync at or under resyncMaxMiBps. */
  private async pace(bytes: number): Promise<void> {
    const now = Date.now()
    const start = Math.max(now, this.paceNext)
    this.paceNext = start + (bytes * 1000) / (this.tun.resyncMaxMiBps * 1024 * 1024)
    if (start > now) await new Promise((r) => setTimeout(r, start - now))
  }

  private until(cond: () => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.closedErr) return reject(this.closedErr)
        if (cond()) return resolve()
        this.waiter = check
      }
      check()
    })
  }

  private wake(): void {
    const w = this.waiter
    this.waiter = null
    if (w) w()
  }

  private check(): void {
    if (this.closedErr) throw this.closedErr
  }
}

function* fullRange(store: NodeStore): Generator<number> {
  for (let b = 0; b < store.blocks; b++) yield b
}

/** SHA-256 of each range of `rb` blocks in [block, block+count), concatenated (32 bytes each). */
export function rangeDigests(store: NodeStore, block: number, count: number, rb: number): Buffer {
  const n = Math.ceil(count / rb)
  const out = Buffer.allocUnsafe(n * 32)
  for (let i = 0, b = block; i < n; i++, b += rb) {
    const data = store.volume.readBlocks(b, Math.min(rb, block + count - b))
    createHash('sha256').update(data).digest().copy(out, i * 32)
  }
  return out
}
