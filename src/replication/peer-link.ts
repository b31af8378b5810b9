import { dialTransport } from '../wire/tls-transport.js'
import type { TlsConfig } from '../wire/tls-transport.js'
import { HANDSHAKE_LIMITS } from '../wire/frame-codec.js'
import type { FrameTransport } from '../wire/transport.js'
import type { Frame, WireMeta } from '../wire/messages.js'
import type { JournalEntryInfo, JournalRecord } from '../storage/types.js'
import type { NodeStore } from './node-store.js'
import type { WriteListener, WritePath } from './write-path.js'
import { primaryHandshake } from './primary-handshake.js'
import type { Decision } from './decide.js'
import type { HandshakeResult } from './primary-handshake.js'
import { ResyncSender } from './resync-sender.js'
import type { LinkTunables, PeerConfig } from './peer-config.js'
import { splitAddress } from './peer-config.js'
import { InFlight } from './in-flight.js'
import { ResyncMeter } from './resync-meter.js'
import type { PeerState } from './status-types.js'
import { Verifier } from './verifier.js'
import type { VerifyOutcome } from './verifier.js'
import { BlockrepError, isCode } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { crc32c } from '../util/crc32c.js'
import { FAILURE_BACKOFF_MAX_MS, repeatedFailure } from './catch-up-backoff.js'
import { FailsafeAsker } from './failsafe.js'
import type { FailsafeTracker } from './failsafe.js'

export type { PeerState } from './status-types.js'

/** What a link reports to its node beyond the data path. */
export interface LinkHooks {
  /** asks for failsafe confirmations while enabled, and records them */
  failsafe?: FailsafeTracker
  /** the peer's META at each handshake; throws to refuse it (this node learned a newer epoch) */
  onPeerMeta?: (peer: string, meta: WireMeta) => void
  /** a FAILSAFE_OK named an epoch newer than this node's */
  onPeerEpoch?: (peer: string, epoch: number) => void
}

export type { LinkTunables, PeerConfig } from './peer-config.js'

/**
 * The primary's link to one standby: dials with backoff, runs the handshake,
 * catches the standby up in the mode decided, then streams journal records in
 * seq order with a bounded in-flight window. Writes for a sync peer wait for
 * its durable ACK only while it is in sync (streaming, consistent, caught up);
 * a peer that drops is tracked from its acked seq by the journal and its dirty
 * bitmap, and the next handshake decides how it catches up.
 */
export class PeerLink implements WriteListener {
  private linkState: PeerState = 'disconnected'
  /** ms epoch: when the link last went up or down (or from syncing to streaming) */
  stateSince = Date.now()
  lastMode: { mode: string; reason: string; blocks: number; bytes: number; at: number } | null = null
  lastError: string | null = null
  /** ms epoch of lastError */
  lastErrorAt: number | null = null
  /** the peer confirmed its position (a handshake) since this link was created; before, `ackedSeq` is the recorded one */
  ackedConfirmed = false
  /** called with every mode the handshake chose (metrics) */
  onMode: ((peer: string, mode: string) => void) | null = null
  readonly meter = new ResyncMeter()
  /** the standby's META from the last handshake (for `plan`) */
  lastStandbyMeta: WireMeta | null = null
  readonly nodeId: string

  private t: FrameTransport | null = null
  private enabled = false
  private acked: number
  private sendSeq = 0
  private readonly inflight = new InFlight()
  private inSync = false
  private syncTarget: number | null = null
  private pumping = false
  private resync: ResyncSender | null = null
  verifier: Verifier | null = null
  private wakeLoop: (() => void) | null = null
  private loopDone: Promise<void> = Promise.resolve()
  private heartbeat: NodeJS.Timeout | null = null
  /** waiting out a repeated catch-up failure (nudges do not cut it short) */
  private backingOff = false
  private sentBefore = 0
  private failsafe: FailsafeAsker | null = null

  constructor(
    readonly peer: PeerConfig,
    private readonly store: NodeStore,
    private readonly wp: WritePath,
    private readonly secret: string,
    private readonly tun: LinkTunables,
    private readonly log: Logger,
    /** dial over TLS when set */
    private readonly tls: TlsConfig | null = null,
    private readonly hooks: LinkHooks = {},
  ) {
    this.nodeId = peer.node
    this.acked = store.peer(peer.node).ackedSeq
  }

  get state(): PeerState {
    return this.linkState
  }

  /** `stateSince` moves when the link goes up or down, or between syncing and streaming: retries do not reset how long it has been down. */
  set state(s: PeerState) {
    const up = (x: PeerState): boolean => x === 'syncing' || x === 'streaming'
    if (up(s) !== up(this.linkState) || (up(s) && s !== this.linkState)) this.stateSince = Date.now()
    this.linkState = s
  }

  /** Records why the link is down (status shows it with its time). */
  noteError(message: string): void {
    this.lastError = message
    this.lastErrorAt = Date.now()
  }

  start(): void {
    if (this.enabled) return
    this.enabled = true
    this.wp.addListener(this)
    // a stop still in progress finishes its loop before the new one begins
    this.loopDone = this.loopDone.then(() => this.loop())
  }

  /**
   * Stops dialing and closes the connection; the peer is tracked from its
   * acked seq. A `reason` (a BlockrepError) travels to the peer in an ERROR
   * frame, so a standby can say why its primary went away.
   */
  async stop(reason?: Error): Promise<void> {
    this.enabled = false
    this.wakeLoop?.()
    await this.t?.close(reason)
    await this.loopDone
    if (!this.enabled) this.wp.removeListener(this)
  }

  /** The standby asked to be dialed (it just came back): skip the rest of the backoff. */
  nudge(): void {
    // a standby that keeps failing its catch-up nudges as often as it restarts: the backoff holds
    if (this.enabled && this.state === 'disconnected' && !this.backingOff) this.wakeLoop?.()
  }

  /** false after stop(): the link does not dial until start() */
  get dialling(): boolean {
    return this.enabled
  }

  ackedSeq(): number {
    return this.acked
  }

  onEvicted(evicted: JournalEntryInfo[]): void {
    this.resync?.noteEvicted(evicted)
  }

  get lagSeq(): number {
    return Math.max(0, this.store.journal.headSeq - this.acked)
  }

  /** Wire bytes sent to this peer since the link was created. */
  get bytesSent(): number {
    return this.sentBefore + (this.t ? this.t.bytesSent : 0)
  }

  get connected(): boolean {
    return this.t !== null && !this.t.closed
  }

  onAppend(rec: JournalRecord): void {
    if (this.state !== 'streaming' || !this.t) return
    if (this.sendSeq === rec.seq && !this.pumping && this.inflight.bytes < this.tun.windowBytes) {
      this.sendRecord(rec)
      return
    }
    void this.pump()
  }

  waitDurable(seq: number): Promise<void> {
    if (this.peer.protocol !== 'sync' || !this.inSync || this.acked >= seq) return Promise.resolve()
    return this.inflight.waitFor(seq)
  }

  /** Online verify against this streaming peer. */
  async verify(rangeBlocks: number): Promise<VerifyOutcome> {
    if (this.state !== 'streaming' || !this.t) {
      throw new BlockrepError('ERR_PEER_GONE', `${this.peer.node} is ${this.state}: verify needs a streaming peer`, { context: { peer: this.peer.node } })
    }
    if (this.verifier) throw new BlockrepError('ERR_USAGE', `a verify of ${this.peer.node} is already running`)
    this.verifier = new Verifier(this.t, this.store, rangeBlocks, () => this.caughtUp())
    try {
      return await this.verifier.run()
    } finally {
      this.verifier = null
    }
  }

  /** Resolves once this peer acknowledged the primary's head as of now (or dropped). */
  private caughtUp(): Promise<void> {
    const head = this.store.journal.headSeq
    if (this.acked >= head || this.state !== 'streaming') return Promise.resolve()
    return this.inflight.waitFor(head)
  }

  private async loop(): Promise<void> {
    let backoff = this.tun.reconnectMinMs
    /** the last catch-up failure (after a handshake) and how many times in a row it repeated without progress */
    let failure: { signature: string; repeats: number } | null = null
    while (this.enabled) {
      let refused = false
      let caughtUpFailure: string | null = null
      const ackedBefore = this.acked
      try {
        this.state = 'connecting'
        const [host, port] = splitAddress(this.peer.address)
        const t = await dialTransport(host, port, { timeoutMs: this.tun.peerTimeoutMs, limits: HANDSHAKE_LIMITS, tls: this.tls })
        this.t = t
        if (!this.enabled) break
        this.state = 'handshake'
        const onMeta = this.hooks.onPeerMeta ? (m: WireMeta) => this.hooks.onPeerMeta!(this.peer.node, m) : undefined
        const hs = await primaryHandshake(t, this.store, this.secret, this.peer.node, this.tun.checksumResync, onMeta)
        this.lastStandbyMeta = hs.standby
        this.ackedConfirmed = true
        this.noteMode(hs.decision)
        backoff = this.tun.reconnectMinMs
        caughtUpFailure = ''
        await this.session(t, hs)
      } catch (err) {
        refused = isCode(err, 'ERR_HANDSHAKE_REFUSED') || isCode(err, 'ERR_AUTH_FAILED')
        const e = err as Error
        if (this.enabled) this.noteError(e.message)
        if (caughtUpFailure !== null) caughtUpFailure = `${(err as BlockrepError).code ?? ''} ${e.message}`
        const level = this.enabled ? (refused ? 'error' : 'warn') : 'debug'
        this.log[level]({ peer: this.peer.node, address: this.peer.address, err: e.message, code: (err as BlockrepError).code }, 'replication link down')
      } finally {
        await this.dropped()
      }
      if (!this.enabled) break
      failure = repeatedFailure(failure, caughtUpFailure, this.acked > ackedBefore)
      let wait = refused ? this.tun.reconnectMaxMs : backoff
      if (failure && failure.repeats > 0) {
        // the same catch-up failed the same way again with no progress: retrying at once would only
        // resend the same data; wait longer each time and say so
        wait = Math.min(FAILURE_BACKOFF_MAX_MS, this.tun.reconnectMaxMs * 2 ** failure.repeats)
        this.noteError(`${this.lastError} (the catch-up failed the same way ${failure.repeats + 1} times in a row with no progress; next try in ${Math.round(wait / 1000)} s)`)
        this.log.warn({ peer: this.peer.node, repeats: failure.repeats + 1, retryInMs: wait }, 'catch-up keeps failing the same way: backing off')
      }
      this.backingOff = failure !== null && failure.repeats > 0
      await this.sleep(wait)
      this.backingOff = false
      backoff = Math.min(backoff * 2, this.tun.reconnectMaxMs)
    }
    this.state = 'disconnected'
  }

  private noteMode(d: Decision): void {
    this.lastMode = { mode: d.mode, reason: d.reason, blocks: d.blocks, bytes: d.bytes, at: Date.now() }
    this.onMode?.(this.peer.node, d.mode)
    this.log.info({ peer: this.peer.node, mode: d.mode, rule: d.rule, reason: d.reason, blocks: d.blocks, bytes: d.bytes }, 'catch-up mode chosen')
  }

  /** Runs one connected session until it ends (throws the reason). */
  private async session(t: FrameTransport, hs: HandshakeResult): Promise<void> {
    const d = hs.decision
    const reader = this.readFrames(t)
    this.heartbeat = setInterval(() => t.send({ type: 'PING', t: Date.now() }), this.tun.heartbeatMs)
    const asker = this.hooks.failsafe ? new FailsafeAsker(this.hooks.failsafe, this.peer.node, this.tun.heartbeatMs) : null
    this.failsafe = asker
    asker?.start((m) => t.send(m), () => this.store.epoch, () => t.closed)
    try {
      // NONE and HEAD_DELTA: every record after the standby's head, including the ones written during the handshake
      let from = hs.standby.headSeq + 1
      if (d.mode === 'BITMAP' || d.mode === 'FULL') {
        this.state = 'syncing'
        this.resync = new ResyncSender(t, this.store, this.wp, this.tun, this.meter, this.log, this.peer.node)
        const run = this.resync.run(d.mode === 'FULL' ? null : d.bitmap, d.mode, this.tun.checksumResync, hs.headAtDecision)
        const frozen = await Promise.race([run, reader])
        from = (frozen as number) + 1
        this.resync = null
        // an acked seq above the standby's new head (e.g. set at a promotion) would hide its acks
        this.setAcked(Math.min(this.acked, from - 1))
        const target = this.store.journal.headSeq
        this.syncTarget = target
        t.send({ type: 'SYNC_DONE', headSeq: target })
      } else {
        // NONE/HEAD_DELTA: the standby is consistent at its head, durably
        this.setAcked(from - 1)
      }
      this.sendSeq = from
      this.state = 'streaming'
      void this.pump()
      await reader
    } finally {
      clearInterval(this.heartbeat)
      this.heartbeat = null
      asker?.stop()
      this.failsafe = null
    }
  }

  private async readFrames(t: FrameTransport): Promise<never> {
    for (;;) {
      const f = await t.next(this.tun.peerTimeoutMs)
      this.onFrame(f)
    }
  }

  private onFrame(f: Frame): void {
    const m = f.msg
    if (this.resync?.handle(f)) return
    if (this.verifier?.handle(f)) return
    switch (m.type) {
      case 'ACK':
        return this.onAck(m.seq)
      case 'FAILSAFE_OK':
        if (m.epoch > this.store.epoch) this.hooks.onPeerEpoch?.(this.peer.node, m.epoch)
        this.failsafe?.answer(m, this.store.epoch)
        return
      case 'PONG':
      case 'PING':
      case 'BLOCKS_ACK': // the standby's answer to the last ROUND_END may arrive after the resync ended
        return
      case 'ERROR':
        throw new BlockrepError('ERR_PEER_GONE', `${this.peer.node} ended the session: ${m.code}: ${m.message}`, { context: { peer: this.peer.node } })
      default:
        throw new BlockrepError('ERR_PROTOCOL', `unexpected ${m.type} from ${this.peer.node}`, { context: { peer: this.peer.node, type: m.type } })
    }
  }

  /** Sets the acked seq after a handshake; lowering it means the dirty bitmap no longer covers from there. */
  private setAcked(seq: number): void {
    const pm = this.store.peer(this.peer.node)
    if (seq < this.acked) pm.bitmapValid = false
    this.acked = seq
    pm.ackedSeq = seq
  }

  private onAck(seq: number): void {
    // the standby confirms consistency with an ACK of at least the target, even when its head did not move
    if (this.syncTarget !== null && seq >= this.syncTarget && seq <= this.acked) this.syncComplete()
    this.inflight.acked(seq)
    if (seq <= this.acked) {
      void this.pump()
      return
    }
    if (seq > this.store.journal.headSeq) {
      throw new BlockrepError('ERR_PROTOCOL', `${this.peer.node} acknowledged seq ${seq} beyond head ${this.store.journal.headSeq}`)
    }
    this.acked = seq
    const pm = this.store.peer(this.peer.node)
    pm.ackedSeq = seq
    if (this.syncTarget !== null && seq >= this.syncTarget) this.syncComplete()
    // everything after the ack is still in the journal: the dirty bitmap has nothing left to say
    if (pm.bitmapValid && !pm.dirty.isEmpty() && this.store.journal.tailSeq <= seq + 1) pm.dirty.clear()
    void this.pump()
  }

  private syncComplete(): void {
    this.syncTarget = null
    const pm = this.store.peer(this.peer.node)
    pm.bitmapValid = true
    if (this.store.journal.tailSeq <= this.acked + 1) pm.dirty.clear()
    this.wp.setThrottle(this.peer.node, 0)
    this.meter.finish()
    this.store.saveMeta()
    this.log.info({ peer: this.peer.node, seq: this.acked }, 'standby consistent: resync complete')
  }

  private sendRecord(rec: JournalRecord): boolean {
    const t = this.t!
    const zero = rec.data === null
    const ok = t.send(
      { type: 'WRITE', seq: rec.seq, epoch: rec.epoch, offset: rec.offset, length: rec.length, zero, crc: zero ? 0 : (rec.crc ?? crc32c(rec.data!)) },
      zero ? undefined : rec.data!,
    )
    this.sendSeq = rec.seq + 1
    this.inflight.sent(rec.seq, rec.length)
    if (this.sendSeq > this.store.journal.headSeq && this.syncTarget === null) this.inSync = true
    return ok
  }

  private async pump(): Promise<void> {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.state === 'streaming' && this.t && !this.t.closed && this.sendSeq <= this.store.journal.headSeq) {
        if (this.inflight.bytes >= this.tun.windowBytes) return
        const rec = this.wp.record(this.sendSeq)
        if (!rec) {
          await this.t.close(new BlockrepError('ERR_PEER_GONE', `${this.peer.node} fell behind the journal (needs seq ${this.sendSeq}, journal starts at ${this.store.journal.tailSeq}); the next handshake will choose BITMAP`))
          return
        }
        if (!this.sendRecord(rec)) await this.t.drained()
      }
      if (this.state === 'streaming' && this.syncTarget === null && this.sendSeq > this.store.journal.headSeq) this.inSync = true
    } catch (err) {
      // a record that cannot be read (I/O, corruption) must not leave the link "streaming" and stuck
      this.log.error({ peer: this.peer.node, err: (err as Error).message, seq: this.sendSeq }, 'streaming stopped: cannot send the next record')
      void this.t?.close(err as Error).catch(() => {})
    } finally {
      this.pumping = false
    }
  }

  private async dropped(): Promise<void> {
    const wasUp = this.state === 'streaming' || this.state === 'syncing'
    this.state = 'disconnected'
    this.inSync = false
    this.syncTarget = null
    this.resync?.abort(new BlockrepError('ERR_PEER_GONE', `${this.peer.node} disconnected`))
    this.verifier?.abort(new BlockrepError('ERR_PEER_GONE', `${this.peer.node} disconnected during verify`))
    this.resync = null
    this.inflight.clear()
    this.meter.stop()
    this.wp.setThrottle(this.peer.node, 0)
    const t = this.t
    this.t = null
    if (t) this.sentBefore += t.bytesSent
    if (t && !t.closed) await t.close().catch(() => {})
    if (wasUp) {
      this.store.peer(this.peer.node).ackedSeq = this.acked
      try {
        this.store.saveMeta()
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'saving metadata after a peer dropped failed')
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wakeLoop = done
    })
  }
}
