import net from 'node:net'
import type { FrameTransport } from '../wire/transport.js'
import { acceptTransport, dialTransport } from '../wire/tls-transport.js'
import type { TlsConfig } from '../wire/tls-transport.js'
import { helloAndAuth } from './handshake.js'
import { HANDSHAKE_LIMITS } from '../wire/frame-codec.js'
import type { WireMeta } from '../wire/messages.js'
import type { NodeStore } from './node-store.js'
import { WritePath } from './write-path.js'
import { PeerLink } from './peer-link.js'
import { splitAddress } from './peer-config.js'
import type { LinkTunables, PeerConfig } from './peer-config.js'
import { IncomingPeers } from './incoming-peers.js'
import { incomingPlan, incomingStatus, outgoingPlan, outgoingStatus } from './peer-status.js'
import { StandbySession, newestEpoch } from './standby-session.js'
import { FailsafeTracker } from './failsafe.js'
import { EpochFence } from './epoch-fence.js'
import type { Fence } from './epoch-fence.js'
import { decideFor } from './primary-handshake.js'
import { journalGap } from './facts.js'
import { BlockrepError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import type { NodeStatus, PeerStatus, PlanEntry } from './status-types.js'

export interface ReplicationConfig {
  secret: string
  /** TLS on the replication link (both directions), or null/absent for plain TCP */
  tls?: TlsConfig | null
  /** replication listener; port 0 picks one */
  listen: { host: string; port: number }
  peers: PeerConfig[]
  tunables: LinkTunables & { divergencePolicy: 'keep' | 'discard' }
}

/**
 * One node's replication role: as primary it owns the write path and a link
 * per standby; as standby it serves one authenticated primary session at a
 * time. Every node listens (a primary refuses sessions: split brain or a
 * standby dialing). Promote and demote switch roles in place.
 */
export class ReplicationNode {
  writePath: WritePath | null = null
  readonly links = new Map<string, PeerLink>()
  private readonly sessions = new Set<StandbySession>()
  private server: net.Server | null = null
  private nudgeTimer: NodeJS.Timeout | null = null
  private closing = false
  readonly upSince = Date.now()
  /** on a standby: why the last session with a primary ended in error (shown by `status` until one ends cleanly) */
  /** the last META each peer sent, for `plan` */
  readonly lastPeerMeta = new Map<string, WireMeta>()
  /** extra gate on client writes (controller lease); null = none */
  writeGate: (() => BlockrepError | null) | null = null
  /** a standby's memory of its configured peers (refusals, who answers as what) */
  readonly incoming: IncomingPeers
  /** extra check before a durable write is acknowledged (the lease must still hold); null = none */
  ackGate: ((seq: number) => BlockrepError | null) | null = null
  /** the failsafe confirmations (both roles); enabled by the agent while under a controller */
  readonly failsafe: FailsafeTracker
  /** newer epochs heard of, and the fence they put on a primary (the owner persists it via onNewerEpoch) */
  readonly epochs: EpochFence
  /** observers for metrics */
  events: { modeChosen?: (peer: string, mode: string) => void; writeLatency?: (seconds: number) => void } = {}

  constructor(
    readonly store: NodeStore,
    private readonly cfg: ReplicationConfig,
    private readonly log: Logger,
    control: { now: () => number; marginMs: number } = { now: () => performance.now(), marginMs: 1000 },
  ) {
    this.incoming = new IncomingPeers(cfg.peers.map((p) => p.node))
    this.failsafe = new FailsafeTracker(control.now, control.marginMs, () => this.cfg.peers.map((p) => p.node))
    this.epochs = new EpochFence(log)
  }

  /** Set while this primary knows a newer epoch: it accepts no write until demoted. */
  get fenced(): Fence | null {
    return this.epochs.fenced
  }

  /** The newest epoch this node knows of: its own, or one it learned of. */
  knownEpoch(): number {
    return this.epochs.known(this.store.epoch)
  }

  /** Records that `epoch` exists (peer, controller); a primary below it is fenced. True when fenced. */
  noteEpoch(epoch: number, reason: string): boolean {
    return this.epochs.note(epoch, reason, this.store.epoch, this.role === 'primary')
  }

  private notePeerMeta(peer: string, meta: WireMeta, dialing: boolean): void {
    const e = newestEpoch(meta.epochs)
    if (this.noteEpoch(e, `newer epoch ${e} seen at peer ${peer}`) && dialing && e > this.store.epoch) {
      throw new BlockrepError('ERR_FENCED', `${peer} knows epoch ${e}, newer than this node's ${this.store.epoch}: it will not be a standby of this node`, { context: { peer, epoch: e } })
    }
  }

  get role(): 'primary' | 'standby' {
    return this.store.meta.role
  }

  get listenPort(): number {
    const a = this.server?.address()
    return a && typeof a === 'object' ? a.port : 0
  }

  /** "host:port" of the replication listener (IPv6 in brackets), or null before it listens. */
  get listenAddress(): string | null {
    const a = this.server?.address()
    if (!a || typeof a !== 'object') return null
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
  }

  async start(): Promise<void> {
    this.store.markOpen()
    await this.listen()
    if (this.role === 'primary') this.becomePrimary()
    else this.store.journal.onReclaim = () => this.store.volume.flushSync()
    this.nudgeTimer = setInterval(() => this.nudgePrimary(), this.cfg.tunables.reconnectMaxMs)
    this.nudgeTimer.unref()
    void this.nudgePrimary()
  }

  /**
   * A standby without a session tells its peers it is up (an authenticated
   * HELLO, then goodbye): the primary among them dials it at once instead of
   * after its reconnect backoff, so a restarted standby catches up sooner.
   */
  private async nudgePrimary(): Promise<void> {
    if (this.role !== 'standby' || this.closing || this.sessions.size > 0) return
    await Promise.all(
      this.cfg.peers.map(async (p) => {
        let t: FrameTransport | null = null
        try {
          const [host, port] = splitAddress(p.address)
          t = await dialTransport(host, port, { timeoutMs: 1000, limits: HANDSHAKE_LIMITS, tls: this.cfg.tls })
          const hello = await helloAndAuth(t, this.store, this.cfg.secret, true, p.node)
          this.incoming.contact(p.node, { reachable: true, role: hello.role })
        } catch (err) {
          this.incoming.contact(p.node, { reachable: false, error: (err as Error).message })
          this.log.debug({ peer: p.node, err: (err as Error).message }, 'nudge not delivered')
        } finally {
          await t?.close().catch(() => {})
        }
      }),
    )
  }

  private listen(): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket))
    this.server = server
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.cfg.listen.port, this.cfg.listen.host, () => {
        server.off('error', reject)
        server.on('error', (err) => this.log.error({ err: err.message }, 'replication listener error'))
        resolve()
      })
    })
  }

  private accept(socket: net.Socket): void {
    // TLS (or its refusal) is settled below the frame layer; the session only sees a FrameTransport
    acceptTransport(socket, { limits: HANDSHAKE_LIMITS, tls: this.cfg.tls, handshakeTimeoutMs: this.cfg.tunables.peerTimeoutMs }).then(
      (t) => this.serve(t),
      (err: BlockrepError) => {
        const level = err.code === 'ERR_PEER_GONE' || err.code === 'ERR_TIMEOUT' ? 'info' : 'error'
        this.log[level]({ remote: err.context?.remote, code: err.code, err: err.message }, 'replication connection refused')
      },
    )
  }

  private serve(t: FrameTransport): void {
    const remote = t.remote
    const session = new StandbySession(
      t,
      this.store,
      {
        secret: this.cfg.secret,
        peerTimeoutMs: this.cfg.tunables.peerTimeoutMs,
        groupCommitMs: this.cfg.tunables.groupCommitMs,
        divergencePolicy: this.cfg.tunables.divergencePolicy,
        onStandbyNudge: (standbyId) => this.links.get(standbyId)?.nudge(),
        onPeerMeta: (peer, meta) => this.notePeerMeta(peer, meta, false),
        knownEpoch: () => this.knownEpoch(),
        failsafe: this.failsafe,
        onAuthenticated: (s, primaryId) => {
          this.incoming.sessionStarted(primaryId)
          for (const other of this.sessions) {
            if (other !== s) void other.close(new BlockrepError('ERR_PEER_GONE', `replaced by a new session from ${primaryId}`))
          }
        },
      },
      this.log,
    )
    this.sessions.add(session)
    session.run().then(
      () => {
        if (session.nudge) return this.log.debug({ remote, standby: session.primaryId }, 'nudge from a standby')
        this.noteSessionEnd(session, session.endReason)
        // an ERROR frame from the primary was logged by the session with its reason
        if (session.endReason === null) this.log.info({ remote, primary: session.primaryId }, 'primary session closed')
      },
      (err: BlockrepError) => {
        this.noteSessionEnd(session, err.message, err)
        const level = err.code === 'ERR_PEER_GONE' ? 'info' : 'warn'
        this.log[level]({ remote, primary: session.primaryId ?? err.context?.peer ?? null, code: err.code, err: err.message }, 'replication session ended')
        if (err.code !== 'ERR_PEER_GONE' && err.code !== 'ERR_TIMEOUT' && !t.closed) void t.close(err).catch(() => {})
      },
    ).finally(() => this.sessions.delete(session))
  }

  /** Remembers why a session ended, for the standby's status (unless a newer session from that peer took over). */
  private noteSessionEnd(session: StandbySession, reason: string | null, err?: BlockrepError): void {
    const ctxPeer = err?.context?.peer
    const peer = session.primaryId ?? (typeof ctxPeer === 'string' ? ctxPeer : null)
    if (peer === null || session.nudge) return
    const mode = session.mode ? { mode: session.mode.mode, reason: session.mode.reason, blocks: session.mode.blocks, bytes: session.mode.bytes, at: session.modeAt } : null
    if (mode !== null) this.incoming.mode(peer, mode)
    const replaced = [...this.sessions].some((o) => o !== session && o.primaryId === peer && !o.nudge)
    if (replaced || this.closing) return
    if (reason === null) return this.incoming.sessionEnded(peer, mode)
    if (err?.code === 'ERR_AUTH_FAILED') {
      return this.incoming.error(peer, `authentication of ${peer} failed: wrong shared secret (this node's "secret" differs from ${peer}'s)`)
    }
    // the transport names the connection by its ephemeral port: noise here
    const why = reason.replace(/^connection to \S+: /, '')
    this.incoming.error(peer, why.startsWith(peer) ? why : `session from ${peer} ended: ${why}`)
  }

  private becomePrimary(): void {
    const wp = new WritePath(this.store, this.log, this.cfg.tunables)
    wp.setWritableCheck(() => {
      if (this.closing) return new BlockrepError('ERR_SHUTDOWN', 'the agent is shutting down')
      if (this.role !== 'primary') return new BlockrepError('ERR_NOT_PRIMARY', `${this.store.meta.nodeId} is not primary`)
      if (this.fenced) return this.fencedError()
      return this.writeGate?.() ?? null
    })
    wp.ackCheck = (seq) => (this.fenced ? this.fencedError() : (this.ackGate?.(seq) ?? null))
    wp.onLatency = (s) => this.events.writeLatency?.(s)
    this.writePath = wp
    for (const p of this.cfg.peers) {
      const link = new PeerLink(p, this.store, wp, this.cfg.secret, this.cfg.tunables, this.log, this.cfg.tls ?? null, {
        failsafe: this.failsafe,
        onPeerMeta: (peer, meta) => this.notePeerMeta(peer, meta, true),
        onPeerEpoch: (peer, epoch) => void this.noteEpoch(epoch, `newer epoch ${epoch} seen at peer ${peer}`),
      })
      link.onMode = (peer, mode) => this.events.modeChosen?.(peer, mode)
      this.links.set(p.node, link)
      link.start()
    }
  }

  private fencedError(): BlockrepError {
    return this.epochs.error(this.store.meta.nodeId, this.store.epoch)
  }

  /**
   * Standby → primary: a new epoch starting at head+1, recorded before any
   * write (invariant 4), numbered above every epoch this node knows of. A
   * standby that gave failsafe confirmations stops giving them at once and
   * waits until the last one runs out before it becomes writable.
   */
  async promote(force: boolean): Promise<{ epoch: number; alreadyPrimary?: boolean }> {
    const meta = this.store.meta
    if (meta.role === 'primary') {
      if (this.fenced) throw this.fencedError()
      return { epoch: this.store.epoch, alreadyPrimary: true }
    }
    if (!meta.consistent && !force) {
      throw new BlockrepError('ERR_NOT_PRIMARY', `${meta.nodeId} is inconsistent (a resync is incomplete); promote --force to take over anyway`, { context: { node: meta.nodeId } })
    }
    const hold = this.failsafe.beginPromotion()
    try {
      for (const s of this.sessions) await s.close(new BlockrepError('ERR_SHUTDOWN', `${meta.nodeId} is being promoted`))
      if (hold > 0) {
        this.log.warn({ waitMs: Math.ceil(hold) }, 'promotion waits until the failsafe confirmations this standby gave have run out')
        await new Promise((r) => setTimeout(r, Math.ceil(hold)))
      }
      // a session that came in during the wait applies nothing more once closing (its flag is set synchronously)
      const late = [...this.sessions].map((s) => s.close(new BlockrepError('ERR_SHUTDOWN', `${meta.nodeId} is being promoted`)))
      const out = this.takeOver(force)
      await Promise.all(late).catch(() => {})
      return out
    } finally {
      this.failsafe.endPromotion()
    }
  }

  private takeOver(force: boolean): { epoch: number } {
    const meta = this.store.meta
    if (meta.role === 'primary') return { epoch: this.store.epoch }
    // a session that arrived during the failsafe wait may have started a resync
    if (!meta.consistent && !force) {
      throw new BlockrepError('ERR_NOT_PRIMARY', `${meta.nodeId} became inconsistent while its promotion waited; promote --force to take over anyway`, { context: { node: meta.nodeId } })
    }
    const head = this.store.journal.headSeq
    const epoch = Math.max(this.epochs.newestSeen, ...meta.epochs.map((e) => e.epoch)) + 1
    // epochs adopted from the old primary that this node never reached hold none of its seqs
    meta.epochs = meta.epochs.filter((e) => e.startSeq <= head)
    meta.epochs.push({ epoch, nodeId: meta.nodeId, startSeq: head + 1 })
    meta.role = 'primary'
    meta.consistent = true
    meta.syncedOnce = true
    for (const p of this.cfg.peers) {
      const pm = this.store.peer(p.node)
      if (!pm.bitmapValid) {
        pm.ackedSeq = head
        pm.bitmapValid = true
        pm.dirty.clear()
      }
    }
    this.store.saveMeta()
    this.epochs.fenced = null
    this.log.warn({ epoch, startSeq: head + 1, forced: force }, 'promoted to primary')
    this.becomePrimary()
    return { epoch }
  }

  /** Primary → standby: stops accepting writes and dialing; the new primary will catch this node up. */
  async demote(): Promise<{ alreadyStandby: boolean }> {
    if (this.role !== 'primary') return { alreadyStandby: true }
    this.store.meta.role = 'standby'
    // new writes are refused from here; the ones already accepted reach the sync peers before the links go
    await this.drainWrites()
    await this.stopLinks(new BlockrepError('ERR_SHUTDOWN', `${this.store.meta.nodeId} was demoted to standby and no longer replicates`))
    this.writePath = null
    this.store.journal.onReclaim = () => this.store.volume.flushSync()
    this.store.saveMeta()
    this.epochs.fenced = null
    this.log.warn({}, 'demoted to standby')
    // ask the primary (if any) to dial now: it catches this node up
    setTimeout(() => void this.nudgePrimary(), 50).unref()
    return { alreadyStandby: false }
  }

  /** Online verify against a streaming peer (see Verifier). */
  async verify(peer: string): Promise<{ peer: string; blocksCompared: number; differingBlocks: number[]; seconds: number }> {
    const out = await this.link(peer).verify(this.cfg.tunables.digestRangeBlocks)
    this.log.info({ peer, blocksCompared: out.blocksCompared, differing: out.differingBlocks.length, seconds: out.seconds }, 'verify finished')
    return { peer, ...out }
  }

  verifyProgress(peer: string) {
    return this.links.get(peer)?.verifier?.progress ?? null
  }

  /** Waits (bounded by the peer timeout) until accepted writes are durable locally and on streaming sync peers. */
  private async drainWrites(): Promise<void> {
    const wp = this.writePath
    if (!wp) return
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.cfg.tunables.peerTimeoutMs)))
    await Promise.race([wp.flush().catch(() => {}), timeout])
    clearTimeout(timer)
  }

  async connect(peer: string): Promise<void> {
    this.link(peer).start()
  }

  async disconnect(peer: string): Promise<void> {
    await this.link(peer).stop()
  }

  private link(peer: string): PeerLink {
    const l = this.links.get(peer)
    if (l) return l
    const me = this.store.meta.nodeId
    const configured = this.cfg.peers.map((p) => p.node)
    if (!configured.includes(peer)) {
      throw new BlockrepError('ERR_CONFIG', `${peer} is not a peer of ${me} (configured peers: ${configured.join(', ') || 'none'})`, { context: { peer } })
    }
    // a standby has no link of its own: its primary dials it and drives verify, connect and disconnect
    const from = [...this.sessions].find((x) => x.primaryId === peer && !x.nudge)
    const link = from ? `${peer} is replicating to ${me} now` : `${peer} is not connected to ${me} now`
    throw new BlockrepError('ERR_NOT_PRIMARY', `${me} is a standby: the primary drives the link (${link}); run this command against the primary's admin API, with --peer ${me}`, { context: { peer, role: this.role } })
  }

  private async stopLinks(reason?: Error): Promise<void> {
    await Promise.all([...this.links.values()].map((l) => l.stop(reason)))
    this.links.clear()
  }

  /** Stops everything; the store is closed by the caller. */
  async close(): Promise<void> {
    this.closing = true
    if (this.nudgeTimer) clearInterval(this.nudgeTimer)
    await this.drainWrites()
    await this.stopLinks(new BlockrepError('ERR_SHUTDOWN', `${this.store.meta.nodeId} is shutting down`))
    for (const s of this.sessions) await s.close(new BlockrepError('ERR_SHUTDOWN', `${this.store.meta.nodeId} is shutting down`)).catch(() => {})
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
  }

  /** For `plan`: what the handshake would decide for each peer now, from its last known META. */
  plan(): PlanEntry[] {
    if (this.links.size === 0) return this.cfg.peers.map((p) => incomingPlan(p, this.liveSession(p.node), this.incoming.get(p.node)))
    return [...this.links.values()].map((link) => outgoingPlan(this.store, link))
  }

  /** The authenticated session a primary runs with this node, if any. */
  private liveSession(peer: string): StandbySession | null {
    return [...this.sessions].find((x) => x.primaryId === peer && !x.nudge) ?? null
  }

  status(): NodeStatus {
    const s = this.store
    const j = s.journal
    const peers: PeerStatus[] = [...this.links.values()].map((link) => outgoingStatus(s, link))
    const live = [...this.sessions].filter((x) => x.primaryId !== null && !x.nudge)
    for (const p of this.cfg.peers) {
      if (this.links.has(p.node)) continue
      const sess = live.find((x) => x.primaryId === p.node) ?? null
      peers.push(incomingStatus(s, p, sess, this.incoming.get(p.node), live.some((x) => x.primaryId !== p.node)))
    }
    // a primary this node does not list among its peers
    for (const sess of live) {
      if (this.cfg.peers.some((p) => p.node === sess.primaryId)) continue
      const cfg = { node: sess.primaryId as string, address: 'incoming (not a configured peer)', protocol: 'sync' as const }
      peers.push(incomingStatus(s, cfg, sess, null, true))
    }
    return {
      node: s.meta.nodeId,
      volumeId: s.meta.volumeId,
      role: s.meta.role,
      epoch: s.epoch,
      headSeq: j.headSeq,
      consistent: s.meta.consistent && !s.metaCorrupt,
      size: s.meta.size,
      blockSize: s.meta.blockSize,
      journal: { tailSeq: j.tailSeq, headSeq: j.headSeq, capacity: j.capacity, used: j.used },
      peers,
      nbd: null,
      upSince: this.upSince,
    }
  }
}
