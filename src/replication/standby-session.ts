import type { FrameTransport } from '../wire/transport.js'
import { validateFramePayload } from '../wire/validate.js'
import type { BlocksMsg, Frame, ModeMsg, RoundBeginMsg, WireMeta, WriteMsg } from '../wire/messages.js'
import type { FailsafeTracker } from './failsafe.js'
import { decodeRuns } from '../wire/messages.js'
import type { BlockBitmap } from '../storage/types.js'
import type { NodeStore } from './node-store.js'
import { GroupCommit } from './group-commit.js'
import { expectFrame, helloAndAuth } from './handshake.js'
import { ResyncMeter } from './resync-meter.js'
import { peerBitmap } from './primary-handshake.js'
import { rangeDigests } from './resync-sender.js'
import { reportDivergence } from './divergence-report.js'
import { applyUnjournaled, markCannotApply } from './standby-apply.js'
import { crc32c } from '../util/crc32c.js'
import { BlockrepError } from '../util/errors.js'
import type { Logger } from '../util/log.js'

export interface StandbyOptions {
  secret: string
  peerTimeoutMs: number
  groupCommitMs: number
  divergencePolicy: 'keep' | 'discard'
  /** called once the primary has authenticated; the node closes any older session */
  onAuthenticated?: (s: StandbySession, primaryId: string) => void
  /** the standby's view changed (state, consistent) */
  onChange?: () => void
  /** on a primary: an authenticated standby asks to be dialed */
  onStandbyNudge?: (standbyId: string) => void
  /** the dialing primary's META, before anything else happens (newer epochs are learned here) */
  onPeerMeta?: (peer: string, meta: WireMeta) => void
  /** the newest epoch this node knows of (its own, or one learned from a peer or controller) */
  knownEpoch?: () => number
  /** answers FAILSAFE requests; none: every request is refused */
  failsafe?: FailsafeTracker
}

/** The newest epoch number in a history (0 when empty). */
export function newestEpoch(epochs: readonly { epoch: number }[]): number {
  return epochs.reduce((m, e) => Math.max(m, e.epoch), 0)
}

/** How often the standby persists its remaining-blocks bitmap during a resync. */
const PERSIST_EVERY_MS = 100

/**
 * A standby's side of one session with its primary: answers the handshake,
 * then applies in seq order — resync BLOCKS (persisting the remaining set so
 * a crash resumes the round), journaled WRITEs (acked once durable), and
 * marks itself consistent only when it reaches the primary's head at
 * SYNC_DONE. Refuses to serve as a standby while it is primary itself.
 */
export class StandbySession {
  primaryId: string | null = null
  /** the peer was a standby announcing itself, not a primary */
  nudge = false
  private primaryVolumeId = ''
  mode: ModeMsg | null = null
  modeAt = 0
  private sessionState: 'handshake' | 'syncing' | 'streaming' = 'handshake'
  /** ms epoch: when `state` last changed */
  stateSince = Date.now()
  /** the resync into this node as the standby sees it (status --watch on a standby) */
  readonly meter = new ResyncMeter()
  /** why the primary ended the session (its ERROR frame), in words */
  endReason: string | null = null
  round: { round: number; total: number; applied: number } | null = null
  private readonly commit: GroupCommit
  private lastAck = 0
  private syncTarget: number | null = null
  private lastPersist = 0
  private remaining: BlockBitmap | null = null
  private closed = false
  private ackScheduled = false
  private persisting = false

  constructor(
    private readonly t: FrameTransport,
    private readonly store: NodeStore,
    private readonly opts: StandbyOptions,
    private readonly log: Logger,
  ) {
    const j = store.journal
    this.commit = new GroupCommit(() => j.sync(), () => j.headSeq, j.headSeq, opts.groupCommitMs)
  }

  get state(): 'handshake' | 'syncing' | 'streaming' {
    return this.sessionState
  }

  set state(s: 'handshake' | 'syncing' | 'streaming') {
    if (s !== this.sessionState) this.stateSince = Date.now()
    this.sessionState = s
  }

  /** Runs the session until the connection ends; resolves normally on a clean close. */
  async run(): Promise<void> {
    const store = this.store
    try {
      const hello = await helloAndAuth(this.t, store, this.opts.secret, false)
      this.primaryId = hello.nodeId
      this.primaryVolumeId = hello.volumeId
      if (hello.role === 'standby') {
        // a standby that came back asks its primary to dial it now rather than after the
        // reconnect backoff; between two standbys it means nothing
        this.nudge = true
        if (store.meta.role === 'primary') this.opts.onStandbyNudge?.(hello.nodeId)
        return
      }
      // the dialing primary sends its META right after auth: read it first, so that a
      // newer epoch is learned (and a stale primary refused) before anything changes here
      const theirs = (await expectFrame(this.t, 'META')).msg.meta
      this.opts.onPeerMeta?.(hello.nodeId, theirs)
      if (store.meta.role === 'primary') {
        // our META tells the other primary our epoch, so the older of the two learns it is stale
        this.t.send({ type: 'META', meta: store.toWire() })
        const why = hello.role === 'primary' ? `split brain: both ${store.meta.nodeId} and ${hello.nodeId} are primary` : `${store.meta.nodeId} is primary; it dials its standbys`
        throw new BlockrepError('ERR_HANDSHAKE_REFUSED', why, { context: { peer: hello.nodeId } })
      }
      const known = this.opts.knownEpoch?.() ?? store.epoch
      const theirEpoch = newestEpoch(theirs.epochs)
      if (theirEpoch < known) {
        this.t.send({ type: 'META', meta: store.toWire() })
        throw new BlockrepError('ERR_HANDSHAKE_REFUSED', `${hello.nodeId} is a stale primary: its epoch ${theirEpoch} is older than epoch ${known} known here`, { context: { peer: hello.nodeId, theirEpoch, known } })
      }
      this.opts.onAuthenticated?.(this, hello.nodeId)
      this.t.send({ type: 'META', meta: store.toWire() })
      let f = await this.t.next(30_000)
      if (f.msg.type === 'DIVERGENCE_QUERY') {
        this.answerDivergence(f.msg.branchSeq)
        f = await this.t.next(30_000)
      }
      if (f.msg.type === 'ERROR') {
        // the primary refused this node (rule 0: geometry, volume, split brain, a newer epoch): say so in its words
        const why = f.msg.message.replace(/^refused [^:]+: /, '')
        throw new BlockrepError(f.msg.code === 'ERR_AUTH_FAILED' ? 'ERR_AUTH_FAILED' : 'ERR_HANDSHAKE_REFUSED', `${hello.nodeId} refused this node: ${why}`, { context: { peer: hello.nodeId, peerCode: f.msg.code } })
      }
      if (f.msg.type !== 'MODE') throw new BlockrepError('ERR_PROTOCOL', `expected MODE, got ${f.msg.type}`)
      this.accept(f.msg, hello.size, hello.blockSize)
      for (;;) {
        const frame = await this.t.next(this.opts.peerTimeoutMs)
        // replaced by a newer session while this frame was in flight: apply nothing more
        if (this.closed) return
        this.apply(frame)
        if (this.closed) return
      }
    } finally {
      this.finish()
    }
  }

  async close(err?: Error): Promise<void> {
    this.closed = true
    await this.t.close(err)
  }

  private answerDivergence(branchSeq: number): void {
    const j = this.store.journal
    const head = j.headSeq
    if (branchSeq >= head || j.tailSeq > branchSeq + 1) {
      this.t.send({ type: 'DIVERGENCE_BLOCKS', known: branchSeq >= head, bitmap: branchSeq >= head ? this.store.bitmaps().create().serialize() : null, fromSeq: branchSeq + 1, toSeq: head })
      return
    }
    const bm = this.store.bitmaps().create()
    const bs = this.store.meta.blockSize
    for (const e of j.entries(branchSeq + 1, head)) if (e.length) bm.addRange(Math.floor(e.offset / bs), Math.ceil((e.offset + e.length) / bs))
    this.t.send({ type: 'DIVERGENCE_BLOCKS', known: true, bitmap: bm.serialize(), fromSeq: branchSeq + 1, toSeq: head })
  }

  private accept(mode: ModeMsg, size: number, blockSize: number): void {
    const m = this.store.meta
    const otherVolume = m.volumeId !== '' && this.primaryVolumeId !== m.volumeId
    if (size !== m.size || blockSize !== m.blockSize || otherVolume) {
      const reason = otherVolume
        ? `volume ${this.primaryVolumeId} is not this standby's volume ${m.volumeId}`
        : `geometry differs: primary ${size} bytes / ${blockSize}-byte blocks, standby ${m.size} / ${m.blockSize}`
      this.t.send({ type: 'MODE_REFUSE', reason })
      throw new BlockrepError('ERR_HANDSHAKE_REFUSED', reason)
    }
    this.mode = mode
    this.modeAt = Date.now()
    this.log.info({ primary: this.primaryId, mode: mode.mode, reason: mode.reason, blocks: mode.blocks, bytes: mode.bytes }, 'catch-up mode accepted')
    if (mode.branchSeq !== null) reportDivergence(this.store, mode.branchSeq, this.opts.divergencePolicy, this.log)
    if (mode.mode === 'NONE' || mode.mode === 'HEAD_DELTA') {
      m.epochs = mode.epochs
      this.store.saveMeta()
      this.state = 'streaming'
    } else {
      this.state = 'syncing'
    }
    this.t.send({ type: 'MODE_ACCEPT' })
    this.opts.onChange?.()
  }

  private apply(f: Frame): void {
    const m = f.msg
    switch (m.type) {
      case 'WRITE':
        return this.applyWrite(m, f)
      case 'BLOCKS':
        return this.applyBlocks(m, f)
      case 'ROUND_BEGIN':
        return this.beginRound(m)
      case 'ROUND_END':
        // nothing to flush here: the next ROUND_BEGIN, or consistency, makes this round's data durable first
        this.t.send({ type: 'BLOCKS_ACK', round: m.round, applied: this.round?.applied ?? 0 })
        return
      case 'SYNC_DONE':
        this.syncTarget = m.headSeq
        this.state = 'streaming'
        this.checkConsistent()
        return
      case 'DIGEST_REQ': {
        validateFramePayload(f, this.store.meta)
        const digests = rangeDigests(this.store, m.block, m.count, m.rangeBlocks)
        this.t.send({ type: 'DIGEST_RESP', id: m.id, block: m.block, count: m.count, rangeBlocks: m.rangeBlocks, crc: crc32c(digests) }, digests)
        return
      }
      case 'FLUSH':
        void this.commit.wait(this.store.journal.headSeq).then(
          () => this.t.send({ type: 'FLUSH_ACK', id: m.id }),
          (err: Error) => this.fail(err, 'journal sync failed'),
        )
        return
      case 'PING':
        this.t.send({ type: 'PONG', t: m.t })
        return
      case 'FAILSAFE': {
        const known = this.opts.knownEpoch?.() ?? this.store.epoch
        const promised = this.opts.failsafe?.confirm(m.epoch, m.windowMs, known, this.store.meta.role === 'standby') ?? false
        this.t.send({ type: 'FAILSAFE_OK', t: m.t, epoch: known, promised })
        return
      }
      case 'PONG':
        return
      case 'ERROR':
        this.closed = true
        this.endReason = `${this.primaryId} ended the session: ${m.message} (${m.code})`
        // a primary shutting down or demoted is an orderly end, not a problem
        this.log[m.code === 'ERR_SHUTDOWN' ? 'info' : 'warn']({ primary: this.primaryId, code: m.code, message: m.message }, 'primary ended the session')
        return
      default:
        throw new BlockrepError('ERR_PROTOCOL', `unexpected ${m.type} from the primary`, { context: { type: m.type } })
    }
  }

  private beginRound(m: RoundBeginMsg): void {
    const store = this.store
    const remaining = m.bitmap ? peerBitmap(store, m.bitmap) : store.bitmaps().create()
    if (!remaining) throw new BlockrepError('ERR_FRAME_INVALID', `ROUND_BEGIN ${m.round} carries a malformed bitmap`)
    if (!m.bitmap) remaining.addRange(0, store.blocks)
    if (this.mode) store.meta.epochs = this.mode.epochs
    // a standby initialised without a volume id adopts the primary's on its first sync
    if (store.meta.volumeId === '') store.meta.volumeId = this.primaryVolumeId
    // the previous round's blocks leave the remaining set now: they must be durable first
    if (this.round) store.volume.flushSync()
    // the content becomes "primary at g_k except the remaining blocks": head g_k, journal restarts after it.
    // The metadata (inconsistent, remaining B_k) is durable before the journal moves: a crash in between
    // must never leave a "consistent" standby whose head claims the round's content.
    store.meta.consistent = false
    store.meta.resyncRemaining = remaining
    store.metaCorrupt = false
    store.saveMeta()
    store.journal.reset(m.frozenSeq + 1)
    this.commit.reset(m.frozenSeq)
    this.remaining = remaining
    this.round = { round: m.round, total: m.blocks, applied: 0 }
    this.meter.begin(m.round, m.mode, m.blocks, m.frozenSeq)
    store.saveMeta()
    this.lastPersist = Date.now()
    this.opts.onChange?.()
  }

  private applyBlocks(m: BlocksMsg, f: Frame): void {
    if (!this.round || m.round !== this.round.round || !this.remaining) {
      throw new BlockrepError('ERR_PROTOCOL', `BLOCKS for round ${m.round} outside that round`)
    }
    validateFramePayload(f, this.store.meta)
    const bs = this.store.meta.blockSize
    let at = 0
    for (const [block, count] of decodeRuns(m.runs)) {
      this.store.volume.writeBlocks(block, f.payload.subarray(at, at + count * bs))
      this.remaining.removeRange(block, block + count)
      this.round.applied += count
      at += count * bs
    }
    this.meter.blocksDone(at / bs, at)
    this.scheduleBlocksAck()
    if (Date.now() - this.lastPersist >= PERSIST_EVERY_MS) this.persistInBackground()
  }

  /** One cumulative BLOCKS_ACK per batch of frames read from the socket, not one per frame. */
  private scheduleBlocksAck(): void {
    if (this.ackScheduled) return
    this.ackScheduled = true
    setImmediate(() => {
      this.ackScheduled = false
      if (this.round && !this.t.closed) this.t.send({ type: 'BLOCKS_ACK', round: this.round.round, applied: this.round.applied })
    })
  }

  /**
   * Saves the remaining set without stalling the stream: snapshot it, flush the
   * data in the thread pool, then save the snapshot — every block it no longer
   * lists was written before the flush began, so it is durable.
   */
  private persistInBackground(): void {
    if (this.persisting || !this.remaining || !this.round) return
    this.persisting = true
    this.lastPersist = Date.now()
    const round = this.round.round
    const snapshot = this.remaining.clone()
    this.store.volume.flush().then(
      () => {
        this.persisting = false
        // superseded by a newer round, consistency or the end of the session
        if (this.closed || !this.remaining || this.round?.round !== round) return
        const meta = this.store.meta
        const live = meta.resyncRemaining
        meta.resyncRemaining = snapshot
        try {
          this.store.saveMeta()
        } catch (err) {
          this.fail(err as Error, 'saving the resync progress failed')
        } finally {
          meta.resyncRemaining = live
        }
      },
      (err: Error) => {
        this.persisting = false
        this.log.error({ err: err.message }, 'flushing resync data failed')
      },
    )
  }

  /** Data first, then the exact remaining set that says it is there. */
  private persistNow(): void {
    this.store.volume.flushSync()
    this.store.saveMeta()
    this.lastPersist = Date.now()
  }

  private applyWrite(m: WriteMsg, f: Frame): void {
    const j = this.store.journal
    if (m.seq !== j.headSeq + 1) {
      throw new BlockrepError('ERR_PROTOCOL', `WRITE seq ${m.seq} out of order: head is ${j.headSeq}`, { context: { seq: m.seq, head: j.headSeq } })
    }
    validateFramePayload(f, this.store.meta)
    const data = m.zero ? null : f.payload
    try {
      if (!j.fits(m.length, m.zero)) {
        this.applyUnjournaled(m, data)
      } else {
        // the payload's crc was just verified against the frame: the journal reuses it
        j.append({ seq: m.seq, epoch: m.epoch, offset: m.offset, length: m.length, data, crc: m.crc })
        if (data) this.store.volume.write(m.offset, data)
        else this.store.volume.zero(m.offset, m.length)
      }
    } catch (err) {
      throw this.cannotApply(m, err as Error)
    }
    void this.commit.wait(m.seq).then(
      () => {
        try {
          this.ackDurable()
        } catch (err) {
          this.fail(err as Error, 'applying a durable write failed')
        }
      },
      (err: Error) => this.fail(err, 'journal sync failed'),
    )
  }

  /** See applyUnjournaled (standby-apply.ts); the group commit restarts with the journal. */
  private applyUnjournaled(m: WriteMsg, data: Buffer | null): void {
    applyUnjournaled(this.store, m, data, this.log.child({ primary: this.primaryId }))
    this.commit.reset(m.seq)
  }

  /** See markCannotApply (standby-apply.ts): the standby stops calling itself consistent. */
  private cannotApply(m: WriteMsg, err: Error): BlockrepError {
    const { error, remaining } = markCannotApply(this.store, m, err, this.log)
    this.remaining = remaining
    this.opts.onChange?.()
    return error
  }

  private ackDurable(): void {
    // a session replaced by a newer one must not touch the shared state any more
    if (this.closed) return
    const d = this.commit.durableSeq
    // reaching the sync target: consistency is persisted first, and its ACK follows
    if (this.syncTarget !== null && d >= this.syncTarget) return this.checkConsistent()
    if (d > this.lastAck && !this.t.closed) {
      this.lastAck = d
      this.t.send({ type: 'ACK', seq: d })
    }
  }

  /** An I/O error in a background step ends the session with a reason; the next handshake decides. */
  private fail(err: Error, what: string): void {
    this.log.error({ primary: this.primaryId, err: err.message }, what)
    void this.close(new BlockrepError('ERR_IO', `${what}: ${err.message}`, { cause: err })).catch(() => {})
  }

  private checkConsistent(): void {
    if (this.closed || this.syncTarget === null || this.commit.durableSeq < this.syncTarget) return
    const store = this.store
    store.volume.flushSync()
    store.meta.consistent = true
    store.meta.syncedOnce = true
    store.meta.resyncRemaining = null
    this.remaining = null
    this.round = null
    this.syncTarget = null
    this.meter.finish()
    store.saveMeta()
    this.log.info({ primary: this.primaryId, head: store.journal.headSeq }, 'consistent with the primary')
    // always confirm: the primary counts the resync done only on this ACK, sent after consistency is durable
    this.lastAck = Math.max(this.lastAck, store.journal.headSeq)
    this.t.send({ type: 'ACK', seq: this.lastAck })
    this.opts.onChange?.()
  }

  private finish(): void {
    this.closed = true
    this.meter.stop()
    // a nudge or a refused session changed nothing
    if (this.mode === null) return this.opts.onChange?.()
    try {
      if (this.remaining) this.persistNow()
      else this.store.journal.syncSync()
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'persisting standby state at session end failed')
    }
    this.opts.onChange?.()
  }
}
