import type { ReplicationNode } from '../replication/replication-node.js'
import { BlockrepError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { LeaseClock, decideWrite, extendLease, parseGrant } from './lease.js'
import type { Lease, LeaseGrant, WriteVerdict } from './lease.js'
import { loadControlState, saveControlState } from './control-state.js'
import type { ControlState } from './control-state.js'
import type { AdminTarget, NodeStatus } from './status-types.js'

/** `GET /status`'s `control` object (docs/control-plane.md §1). */
export type ControlStatus = NonNullable<NodeStatus['control']>

export interface LeaseGuardOptions {
  node: ReplicationNode
  /** `<meta>.control.json` */
  statePath: string
  /** tunables.leaseMarginMs */
  marginMs: number
  /** tunables.failsafeMs; 0 = the last grant's leaseMs */
  failsafeMs: number
  /** the agent's monotonic clock (ms); performance.now by default */
  now?: () => number
  log: Logger
}

/**
 * Invariant 6 on the agent: the node is taken over by a controller through
 * its admin API (persisted), accepts a client write only while its lease is
 * valid — or while every standby confirms the failsafe — and never while it
 * knows a newer epoch. It installs itself as the replication node's write
 * and acknowledgement gates.
 */
export class LeaseGuard implements NonNullable<AdminTarget['control']> {
  private state: ControlState
  private held: Lease | null = null
  /** what allowed (or refused) the last write, for transition logs */
  private lastVia: string | null = null
  private readonly clock: LeaseClock
  private readonly node: ReplicationNode
  private readonly now: () => number
  private readonly log: Logger

  constructor(private readonly opts: LeaseGuardOptions) {
    this.node = opts.node
    this.now = opts.now ?? (() => performance.now())
    this.log = opts.log
    this.clock = new LeaseClock(opts.marginMs)
    this.state = loadControlState(opts.statePath)
    const node = this.node
    node.epochs.newestSeen = Math.max(node.epochs.newestSeen, this.state.knownEpoch)
    const f = this.state.fenced
    if (f !== null && node.role === 'primary' && f.epoch > node.store.epoch) node.epochs.fenced = { epoch: f.epoch, reason: f.reason, at: f.since }
    node.failsafe.enabled = this.state.controlled
    node.writeGate = () => this.refusal(this.verdict())
    node.ackGate = (seq) => this.ackRefusal(seq)
    node.epochs.onNewerEpoch = () => this.persistEpochs()
    if (this.state.controlled) this.log.warn({ controller: this.state.controller, term: this.state.term }, 'under a controller: no client write until a lease is granted')
    if (node.fenced) this.log.error({ fenced: node.fenced }, 'fenced: a newer epoch exists; this node accepts no write until demoted')
  }

  /** May a client write be accepted now? */
  verdict(): WriteVerdict {
    const node = this.node
    return decideWrite({
      now: this.now(),
      controlled: this.state.controlled,
      fenced: node.fenced ? node.fenced.reason : null,
      lease: this.held,
      failsafeUntil: node.failsafe.validUntil(),
    })
  }

  private refusal(v: WriteVerdict): BlockrepError | null {
    this.noteTransition(v)
    if (v.ok) return null
    return new BlockrepError(v.code, `${this.node.store.meta.nodeId} accepts no write: ${v.reason}`, { context: { node: this.node.store.meta.nodeId } })
  }

  /** Logs when client writes start or stop being allowed (seen at the next write), not every refusal. */
  private noteTransition(v: WriteVerdict): void {
    const via = v.ok ? v.via : v.code
    if (via === this.lastVia) return
    const was = this.lastVia
    this.lastVia = via
    if (v.ok) this.log.info({ via, was }, 'client writes allowed')
    else this.log.warn({ code: v.code, reason: v.reason, was }, 'client writes refused')
  }

  /**
   * At acknowledgement: the lease must still hold. Under the failsafe alone a
   * write is acknowledged only once every standby holds it, so a standby
   * promoted meanwhile cannot lack a write the client was told is durable.
   */
  private ackRefusal(seq: number): BlockrepError | null {
    const v = this.verdict()
    if (!v.ok) return this.refusal(v)
    if (v.via !== 'failsafe') return null
    for (const link of this.node.links.values()) {
      if (link.ackedSeq() < seq) {
        return new BlockrepError('ERR_LEASE_EXPIRED', `lease expired and standby ${link.nodeId} has not confirmed seq ${seq} (acked ${link.ackedSeq()})`, { context: { peer: link.nodeId, seq } })
      }
    }
    return null
  }

  status(): ControlStatus {
    const now = this.now()
    const v = this.verdict()
    const fsUntil = this.node.failsafe.validUntil()
    const f = this.node.fenced
    return {
      controlled: this.state.controlled,
      controller: this.state.controller,
      term: this.state.term,
      lease: this.held ? { valid: now < this.held.expiresAt, remainingMs: Math.max(0, round1(this.held.expiresAt - now)), holder: this.held.holder } : null,
      failsafe: {
        active: v.ok && v.via === 'failsafe',
        remainingMs: fsUntil !== null && fsUntil > now ? round1(fsUntil - now) : null,
        confirmedBy: this.node.failsafe.confirmedBy(),
      },
      fenced: f ? { epoch: f.epoch, reason: f.reason, since: f.at } : null,
      writable: this.node.role === 'primary' && v.ok,
    }
  }

  /** POST /v1/control/lease */
  async lease(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const g = parseGrant(body, 'lease')
    this.checkTerm(g)
    const node = this.node
    const known = node.knownEpoch()
    if (known > g.epoch) {
      throw new BlockrepError('ERR_FENCED', `${node.store.meta.nodeId} knows epoch ${known}, newer than the granted epoch ${g.epoch}`, { context: { known, granted: g.epoch } })
    }
    if (g.epoch > node.store.epoch) node.noteEpoch(g.epoch, `controller ${g.controller} named epoch ${g.epoch}, newer than this node's ${node.store.epoch}`)
    if (node.role !== 'primary' || g.epoch !== node.store.epoch) {
      throw new BlockrepError('ERR_STALE_EPOCH', `${node.store.meta.nodeId} is ${node.role} in epoch ${node.store.epoch}; the grant names epoch ${g.epoch}`, { context: { role: node.role, epoch: node.store.epoch, granted: g.epoch } })
    }
    if (node.fenced) throw new BlockrepError('ERR_FENCED', `${node.store.meta.nodeId} is fenced: ${node.fenced.reason}`, { context: { epoch: node.fenced.epoch } })
    this.takeControl(g.controller, g.term)
    const validForMs = this.install(g)
    return { node: node.store.meta.nodeId, role: node.role, epoch: node.store.epoch, headSeq: node.store.journal.headSeq, lease: { validForMs, holder: g.controller } }
  }

  /** POST /v1/control/release: the operator's escape hatch; the node writes without a lease again. */
  async release(): Promise<Record<string, unknown>> {
    const was = this.state.controller
    this.state = { ...this.state, controlled: false, controller: null, since: null }
    this.save()
    this.held = null
    this.node.failsafe.enabled = false
    this.log.warn({ controller: was }, 'released from control: writes no longer need a lease')
    return { ok: true, wasControlled: was !== null }
  }

  /** POST /promote, with or without a controller. */
  async promote(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const force = body.force ?? false
    if (typeof force !== 'boolean') throw new BlockrepError('ERR_USAGE', 'force: expected true or false')
    const controller = optionalString(body, 'controller')
    const expect = body.expectEpoch
    if (expect !== undefined && (typeof expect !== 'number' || !Number.isSafeInteger(expect) || expect < 0)) {
      throw new BlockrepError('ERR_USAGE', `expectEpoch: expected an integer ≥ 0, got ${JSON.stringify(expect)}`)
    }
    let grant: LeaseGrant | null = null
    if (body.lease !== undefined) {
      if (typeof body.lease !== 'object' || body.lease === null || Array.isArray(body.lease)) throw new BlockrepError('ERR_USAGE', 'lease: expected an object')
      const l = body.lease as Record<string, unknown>
      grant = parseGrant({ controller, ...l }, 'lease', 0)
      this.checkTerm(grant)
    }
    const node = this.node
    if (node.role === 'primary' && !node.fenced && expect !== undefined && node.store.epoch !== expect) {
      throw new BlockrepError('ERR_STALE_EPOCH', `${node.store.meta.nodeId} is already primary in epoch ${node.store.epoch}, not ${expect}`, { context: { epoch: node.store.epoch, expected: expect } })
    }
    if (node.role === 'standby' && expect !== undefined && node.store.epoch !== expect) {
      throw new BlockrepError('ERR_STALE_EPOCH', `${node.store.meta.nodeId} is in epoch ${node.store.epoch}, not ${expect}`, { context: { epoch: node.store.epoch, expected: expect } })
    }
    // persisted before the promotion: a crash right after it restarts fenced, never writable without a lease
    if (controller !== undefined) this.takeControl(controller, grant?.term ?? this.state.term)
    const out = await node.promote(force)
    const res: Record<string, unknown> = { epoch: out.epoch, alreadyPrimary: out.alreadyPrimary === true }
    if (grant !== null) res.lease = { validForMs: this.install({ ...grant, epoch: out.epoch }), holder: grant.controller }
    return res
  }

  /** POST /demote, with or without a controller: the node becomes a standby; the fence (if any) is lifted with the role. */
  async demote(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const controller = optionalString(body, 'controller')
    if (controller !== undefined) this.takeControl(controller, this.state.term)
    const out = await this.node.demote()
    this.held = null
    if (this.state.fenced !== null) {
      this.state = { ...this.state, fenced: null }
      this.save()
    }
    return { ok: true, alreadyStandby: out.alreadyStandby }
  }

  private checkTerm(g: LeaseGrant): void {
    if (g.term < this.state.term) {
      throw new BlockrepError('ERR_NOT_LEADER', `${g.controller} grants in term ${g.term}, but term ${this.state.term} was already seen here`, { context: { term: g.term, seen: this.state.term } })
    }
  }

  /** Sets the lease from a grant; returns how long it is valid from now (≤ 0: already expired). */
  private install(g: LeaseGrant): number {
    const now = this.now()
    const expiresAt = this.clock.expiryOf(g, now)
    this.held = extendLease(this.held, g, expiresAt)
    this.node.failsafe.windowMs = this.opts.failsafeMs > 0 ? this.opts.failsafeMs : g.leaseMs
    return round1(this.held.expiresAt - now)
  }

  private takeControl(controller: string, term: number): void {
    const s = this.state
    if (s.controlled && s.controller === controller && s.term >= term) return
    this.state = { ...s, controlled: true, controller, term: Math.max(s.term, term), since: s.controlled && s.since !== null ? s.since : Date.now() }
    this.save()
    this.node.failsafe.enabled = true
    if (!s.controlled) this.log.warn({ controller, term }, 'taken over by a controller: client writes need a lease from now on')
  }

  private persistEpochs(): void {
    const f = this.node.fenced
    this.state = {
      ...this.state,
      knownEpoch: Math.max(this.state.knownEpoch, this.node.epochs.newestSeen),
      fenced: f ? { epoch: f.epoch, reason: f.reason, since: f.at } : this.state.fenced,
    }
    this.save()
  }

  private save(): void {
    try {
      saveControlState(this.opts.statePath, this.state)
    } catch (err) {
      // the in-memory state still enforces; the operator must know the restart guarantee is at risk
      this.log.error({ err: (err as Error).message, path: this.opts.statePath }, 'saving the control state failed')
      throw err
    }
  }
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string' || v.length === 0 || v.length > 256) throw new BlockrepError('ERR_USAGE', `${key}: expected a non-empty string, got ${JSON.stringify(v)}`)
  return v
}

function round1(n: number): number {
  return Math.round(n * 10) / 10
}
