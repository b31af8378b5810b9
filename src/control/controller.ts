import { randomBytes } from 'node:crypto'
import { BlockrepError, isCode } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { AgentClient } from './agent-client.js'
import type { Fetch } from './agent-client.js'
import { AlarmBook } from './alarms.js'
import type { AlarmEvent } from './alarms.js'
import { AlarmSink } from './alarm-sink.js'
import type { ControllerConfig } from './config.js'
import { FailoverRunner } from './failover.js'
import type { FailoverRecord } from './failover.js'
import { nodeAvailable, primaryVerdict, siteHealth } from './health.js'
import type { SiteHealth } from './health.js'
import type { ControlStore, Leadership, NodePosition, VolumeDoc } from './store.js'
import { heartbeat, systemClock } from './runtime.js'
import type { Clock, NodeRuntime, VolumeRuntime } from './runtime.js'
import { alarmConditions } from './conditions.js'
import { buildDoc, sameDoc } from './volume-doc.js'
import type { MemberView } from './volume-doc.js'

const POSITION_REFRESH_MS = 10_000

/**
 * The controller's loop, a thin shell around the pure decisions (health.ts,
 * failover-choice.ts, fencing.ts, alarms.ts): heartbeats every agent, records
 * positions, grants the primary its lease, fails over a failed primary,
 * demotes stale primaries so they rejoin, publishes the volume documents and
 * raises alarms. docs/controller.md.
 */
export class Controller {
  readonly id: string
  readonly volumes = new Map<string, VolumeRuntime>()
  alarms: AlarmBook
  readonly failovers: FailoverRecord[] = []
  startedAt = 0
  startedWall = 0
  takeoverAt = 0
  lead: Leadership | null = null
  private timer: NodeJS.Timeout | null = null
  private stopped = false
  private readonly sink: AlarmSink
  private readonly runner: FailoverRunner
  private readonly published = new Set<(doc: VolumeDoc) => void>()
  private readonly leaseWarned = new WeakSet<NodeRuntime>()
  private readonly leaseRecorded = new WeakMap<VolumeRuntime, string>()

  constructor(
    readonly cfg: ControllerConfig,
    readonly store: ControlStore,
    readonly log: Logger,
    readonly clock: Clock = systemClock,
    fetchImpl?: Fetch,
  ) {
    this.id = `${cfg.name}/${randomBytes(4).toString('hex')}`
    for (const v of cfg.volumes) {
      const nodes = new Map<string, NodeRuntime>()
      for (const n of v.nodes) {
        nodes.set(n.node, {
          volume: v.id, cfg: n, client: new AgentClient({ admin: n.admin, token: n.adminToken, fetch: fetchImpl }),
          status: null, lastAnswerAt: null, lastSeenWall: null, lastError: null, inFlight: false,
          leaseSupported: null, lastGrantSentAt: null, lastDemoteAt: null, changedAt: null, lastPosition: null,
        })
      }
      this.volumes.set(v.id, { cfg: v, nodes, doc: null, busy: null, blockedReason: null, recovering: null })
    }
    this.alarms = new AlarmBook()
    this.sink = new AlarmSink(cfg.alarm, log)
    this.runner = new FailoverRunner(this)
  }

  /** Takes the store's leadership, loads the published documents and starts the loop. */
  async start(): Promise<void> {
    this.lead = await this.store.campaign(this.id, this.cfg.leaseMs)
    this.lead.onLost(reason => {
      this.log.error({ reason }, 'leadership lost: the controller stops acting')
      void this.stop()
    })
    this.startedAt = this.clock.mono()
    this.startedWall = this.clock.wall()
    // a new leader assumes its predecessor granted a lease just before it died
    this.takeoverAt = this.startedAt
    for (const [name, v] of this.volumes) v.doc = await this.store.getVolume(name)
    const stored = await this.store.alarms()
    this.alarms = new AlarmBook(stored)
    this.log.info({ id: this.id, term: this.lead.term, volumes: [...this.volumes.keys()], heartbeatMs: this.cfg.heartbeatMs, timeoutMs: this.cfg.timeoutMs, leaseMs: this.cfg.leaseMs }, 'controller leading')
    this.sendHeartbeats()
    this.timer = setInterval(() => this.tick(), this.cfg.heartbeatMs)
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    if (this.timer !== null) clearInterval(this.timer)
    await Promise.all([...this.volumes.values()].map(v => v.busy?.catch(() => {})))
  }

  get isStopped(): boolean {
    return this.stopped
  }

  /** Called with every document this controller publishes. */
  onPublish(cb: (doc: VolumeDoc) => void): () => void {
    this.published.add(cb)
    return () => this.published.delete(cb)
  }

  private tick(): void {
    if (this.stopped) return
    try {
      this.evaluate()
    } catch (err) {
      this.log.error({ err }, 'controller evaluation failed')
    }
    this.sendHeartbeats()
  }

  private sendHeartbeats(): void {
    for (const v of this.volumes.values()) for (const n of v.nodes.values()) heartbeat(n, this.clock, this.cfg.timeoutMs, this.log)
  }


  /**
   * Answered within the timeout. A node not heard from since the start counts
   * as available during the first timeoutMs (no failover on a slow first
   * answer); callers that need its status check `status !== null`.
   */
  available(n: NodeRuntime, now = this.clock.mono()): boolean {
    return nodeAvailable(n.lastAnswerAt, this.startedAt, now, this.cfg.timeoutMs)
  }

  /** Available and heard from: what the document and the failover choice count. */
  seen(n: NodeRuntime, now = this.clock.mono()): boolean {
    return n.status !== null && n.lastAnswerAt !== null && this.available(n, now)
  }

  /** Site health over every node of every volume. */
  sites(now = this.clock.mono()): Map<string, SiteHealth> {
    const all: { site: string; available: boolean }[] = []
    for (const v of this.volumes.values()) {
      for (const n of v.nodes.values()) all.push({ site: n.cfg.site, available: nodeAvailable(n.lastAnswerAt, this.startedAt, now, this.cfg.timeoutMs) })
    }
    return siteHealth(all, this.cfg.siteThreshold)
  }

  /** One evaluation of everything (normally every heartbeatMs). */
  evaluate(): void {
    const now = this.clock.mono()
    const sites = this.sites(now)
    for (const v of this.volumes.values()) {
      this.recordPositions(v, now)
      this.evaluateVolume(v, sites, now)
    }
    const conditions = alarmConditions({
      grace: now - this.startedAt <= this.cfg.timeoutMs,
      sites: [...sites.values()],
      volumes: [...this.volumes.values()].map(v => ({
        id: v.cfg.id, primary: v.doc?.value.primary?.node ?? null, blockedReason: v.blockedReason, recovering: v.recovering,
        nodes: [...v.nodes.values()].map(n => ({ node: n.cfg.node, site: n.cfg.site, available: this.available(n, now), lastError: n.lastError })),
      })),
    })
    const events = this.alarms.update(conditions, this.clock.wall())
    if (events.length > 0) void this.emitAlarms(events)
  }

  private evaluateVolume(v: VolumeRuntime, sites: Map<string, SiteHealth>, now: number): void {
    if (v.busy !== null) return
    const doc = v.doc?.value ?? null
    const up = (n: NodeRuntime): boolean => this.seen(n, now)
    if (doc === null || doc.primary === null) {
      const primaries = [...v.nodes.values()].filter(n => up(n) && n.status?.role === 'primary')
      primaries.sort((a, b) => (b.status?.epoch ?? 0) - (a.status?.epoch ?? 0))
      const p = primaries[0]
      if (p !== undefined) {
        this.log.info({ volume: v.cfg.id, primary: p.cfg.node, epoch: p.status?.epoch }, 'adopting the primary the nodes report')
        this.track(v, this.publish(v, p.cfg.node, p.status?.epoch ?? 0))
      }
      return
    }
    for (const n of v.nodes.values()) {
      if (n.cfg.node === doc.primary.node || !up(n) || n.status?.role !== 'primary') continue
      if (n.status.epoch > doc.epoch) {
        this.log.warn({ volume: v.cfg.id, node: n.cfg.node, epoch: n.status.epoch, published: doc.epoch }, 'a node is primary in a newer epoch than the published one (promoted by hand?): adopting it')
        this.track(v, this.publish(v, n.cfg.node, n.status.epoch))
        return
      }
      this.demoteStale(v, n, doc)
    }
    const pr = v.nodes.get(doc.primary.node)
    if (pr === undefined) return
    let verdict = primaryVerdict(pr.cfg.node, this.available(pr, now), sites.get(pr.cfg.site))
    if (!verdict.failed && pr.status?.role === 'standby') {
      verdict = { failed: true, reason: `published primary ${pr.cfg.node} reports role standby` }
    }
    if (verdict.failed) {
      if (!this.runner.mayStart(v)) return
      this.track(v, this.runner.failover(v, verdict.reason))
      return
    }
    v.blockedReason = null
    if (pr.status === null) return
    // grants only to a primary that answers: every grant sent, answered or not, pushes back the earliest
    // promotion (lastGrantSentAt + leaseMs), so a primary that stopped answering stops being granted
    const fresh = pr.lastAnswerAt !== null && now - pr.lastAnswerAt <= 2 * this.cfg.heartbeatMs
    if (fresh && pr.status?.role === 'primary' && pr.status.epoch === doc.epoch) void this.grant(v, pr, doc.epoch)
    if (v.recovering !== null) {
      const old = v.nodes.get(v.recovering.from)
      if (old !== undefined && up(old) && old.status?.role === 'standby') {
        this.log.info({ volume: v.cfg.id, node: old.cfg.node }, 'the old primary is back as a standby')
        v.recovering = null
      }
    }
    const next = buildDoc(v.cfg.id, doc, doc.primary.node, doc.epoch, this.members(v, doc.primary.node, now), this.clock.wall())
    if (!sameDoc(next, doc)) this.track(v, this.putDoc(v, next))
  }

  /** A node primary in an older epoch (or not the published one): demote it; it rejoins as a standby (rule 2). */
  private demoteStale(v: VolumeRuntime, n: NodeRuntime, doc: VolumeDoc): void {
    const now = this.clock.mono()
    if (n.lastDemoteAt !== null && now - n.lastDemoteAt < this.cfg.timeoutMs) return
    n.lastDemoteAt = now
    this.log.warn({ volume: v.cfg.id, node: n.cfg.node, epoch: n.status?.epoch, published: doc.epoch, primary: doc.primary?.node }, 'a stale primary answers: demoting it so it rejoins as a standby')
    n.client.demote(this.id, Math.max(this.cfg.timeoutMs, 10_000)).then(
      () => {
        this.roleChanged(n, 'standby', null)
        this.log.info({ volume: v.cfg.id, node: n.cfg.node }, 'stale primary demoted')
      },
      (err: Error) => this.log.warn({ volume: v.cfg.id, node: n.cfg.node, err: err.message }, 'demoting the stale primary failed; will retry'),
    )
  }

  /** Sends a lease grant; a 404 marks the agent "lease unsupported" (logged once). */
  async grant(v: VolumeRuntime, n: NodeRuntime, epoch: number): Promise<void> {
    if (n.leaseSupported === false || this.stopped) return
    const sentAtMs = this.clock.mono()
    n.lastGrantSentAt = sentAtMs
    try {
      const r = await n.client.lease({ controller: this.id, term: this.lead?.term ?? 0, epoch, leaseMs: this.cfg.leaseMs, sentAtMs }, this.cfg.timeoutMs)
      if (r === 'unsupported') {
        n.leaseSupported = false
        this.log.warn({ volume: v.cfg.id, node: n.cfg.node }, 'the agent has no lease endpoint (POST /v1/control/lease answered 404): lease unsupported, fencing relies on waiting out leaseMs only')
        return
      }
      n.leaseSupported = true
      const valid = r.lease?.validForMs ?? 0
      if (valid <= 0 && !this.leaseWarned.has(n)) {
        this.leaseWarned.add(n)
        this.log.error({ volume: v.cfg.id, node: n.cfg.node, leaseMs: this.cfg.leaseMs, validForMs: valid }, 'the lease grant gives the primary no time to write: leaseMs must exceed the agent\'s leaseMarginMs plus the grant\'s delay')
      }
      const rec = { volume: v.cfg.id, node: n.cfg.node, epoch, leaseMs: this.cfg.leaseMs }
      if (this.leaseRecorded.get(v) !== `${rec.node}/${epoch}`) {
        this.leaseRecorded.set(v, `${rec.node}/${epoch}`)
        await this.store.putLease(this.requireLead(), rec).catch(err => this.storeFailed(err))
      }
    } catch (err) {
      const e = err as BlockrepError
      if (e.code === 'ERR_STALE_EPOCH' || e.code === 'ERR_FENCED') this.log.warn({ volume: v.cfg.id, node: n.cfg.node, epoch, err: e.message }, 'lease grant refused')
      else this.log.debug({ volume: v.cfg.id, node: n.cfg.node, err: e.message }, 'lease grant not delivered')
    }
  }

  /** Records a role change this controller made, so that stale heartbeat answers do not undo it. */
  roleChanged(n: NodeRuntime, role: 'primary' | 'standby', epoch: number | null): void {
    n.changedAt = this.clock.mono()
    if (n.status !== null) n.status = { ...n.status, role, epoch: epoch ?? n.status.epoch }
  }

  /** What the document says about each member now. */
  members(v: VolumeRuntime, primary: string | null, now = this.clock.mono()): MemberView[] {
    const p = primary === null ? undefined : v.nodes.get(primary)
    return [...v.nodes.values()].map(n => {
      const fromPrimary = p?.status?.peers.find(x => x.node === n.cfg.node)?.ackedSeq
      return { cfg: n.cfg, available: this.seen(n, now), consistent: n.status?.consistent ?? false, ackedSeq: fromPrimary ?? n.status?.headSeq ?? 0 }
    })
  }

  /** Publishes `primary` at `epoch` as the volume's document (compare-and-set on the stored version). */
  async publish(v: VolumeRuntime, primary: string | null, epoch: number): Promise<VolumeDoc> {
    const next = buildDoc(v.cfg.id, v.doc?.value ?? null, primary, epoch, this.members(v, primary), this.clock.wall())
    return this.putDoc(v, next)
  }

  private async putDoc(v: VolumeRuntime, doc: VolumeDoc): Promise<VolumeDoc> {
    const lead = this.requireLead()
    let version: number
    try {
      version = await this.store.putVolume(lead, doc, v.doc?.version ?? null)
    } catch (err) {
      if (isCode(err, 'ERR_STORE_CONFLICT')) v.doc = await this.store.getVolume(v.cfg.id)
      this.storeFailed(err)
      throw err
    }
    v.doc = { value: doc, version }
    this.log.info({ volume: doc.volume, epoch: doc.epoch, revision: doc.revision, primary: doc.primary?.node ?? null }, 'volume document published')
    for (const cb of this.published) cb(doc)
    return doc
  }

  private recordPositions(v: VolumeRuntime, now: number): void {
    if (this.lead === null) return
    for (const n of v.nodes.values()) {
      const s = n.status
      if (s === null) continue
      const pos: NodePosition = {
        volume: v.cfg.id, node: n.cfg.node, role: s.role, epoch: s.epoch, headSeq: s.headSeq, consistent: s.consistent,
        ackedSeqs: s.role === 'primary' ? Object.fromEntries(s.peers.map(p => [p.node, p.ackedSeq])) : {},
        available: this.seen(n, now), lastSeenAt: n.lastSeenWall,
      }
      // an idle node's position is rewritten only every POSITION_REFRESH_MS (lastSeenAt alone moves)
      const key = JSON.stringify({ ...pos, lastSeenAt: null })
      if (key === n.lastPosition?.key && now - n.lastPosition.at < POSITION_REFRESH_MS) continue
      n.lastPosition = { key, at: now }
      this.store.putPosition(this.lead, pos).catch(err => this.storeFailed(err))
    }
  }

  private async emitAlarms(events: AlarmEvent[]): Promise<void> {
    const lead = this.lead
    if (lead !== null) for (const ev of events) await this.store.putAlarm(lead, ev.alarm).catch(err => this.storeFailed(err))
    await this.sink.deliver(events)
  }

  /** Runs `p` as the volume's busy operation. */
  track(v: VolumeRuntime, p: Promise<unknown>): void {
    const op = p.catch(err => this.log.error({ volume: v.cfg.id, err: (err as Error).message }, 'volume operation failed')).finally(() => {
      if (v.busy === op) v.busy = null
    })
    v.busy = op
  }

  requireLead(): Leadership {
    if (this.lead === null || !this.lead.isHeld()) throw new BlockrepError('ERR_NOT_LEADER', `controller ${this.id} does not lead`)
    return this.lead
  }

  private storeFailed(err: unknown): void {
    const e = err as BlockrepError
    if (e.code === 'ERR_NOT_LEADER') {
      this.log.error({ err: e.message }, 'the store says this controller no longer leads: stopping')
      void this.stop()
      return
    }
    this.log.warn({ err: e.message, code: e.code }, 'store write failed')
  }

  /** Planned switchover to `to` (POST /v1/volumes/NAME/switchover). */
  switchover(volume: string, to: string): Promise<VolumeDoc> {
    const v = this.volumes.get(volume)
    if (v === undefined) throw new BlockrepError('ERR_USAGE', `no volume "${volume}"`)
    if (v.busy !== null) throw new BlockrepError('ERR_STORE_CONFLICT', `volume ${volume} has a failover or switchover in progress`)
    const p = this.runner.switchover(v, to)
    this.track(v, p)
    return p
  }
}
