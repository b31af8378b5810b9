import { BlockrepError } from '../util/errors.js'

/**
 * Lease arithmetic for a primary under a controller (docs/control-plane.md §1),
 * pure and clock-free: every function takes the agent's monotonic reading.
 */

/** One `POST /v1/control/lease` (or the `lease` of a controlled promote). */
export interface LeaseGrant {
  /** controller instance id: name + a random id made at its process start */
  controller: string
  /** leadership term; a grant from a lower term than one already seen is refused */
  term: number
  /** the epoch in which the controller believes this node is primary */
  epoch: number
  /** validity, counted from sentAtMs */
  leaseMs: number
  /** the controller's monotonic clock when it sent the grant */
  sentAtMs: number
}

/** The lease a node holds now. */
export interface Lease {
  holder: string
  term: number
  leaseMs: number
  /** agent monotonic ms; writes stop at this instant */
  expiresAt: number
}

/** Controller instances whose offsets are remembered (a restarted controller gets a new id). */
const MAX_CONTROLLERS = 16

/**
 * Turns a controller's send time into the agent's monotonic clock without
 * trusting either wall clock: per controller instance it keeps
 * `offset = min over grants (agentNow − sentAtMs)` — the smallest observed
 * skew plus delay — so a grant delayed in the network never extends the
 * lease past what the controller counted on, and
 * `expiry = sentAtMs + offset + leaseMs − marginMs`.
 */
export class LeaseClock {
  private readonly offsets = new Map<string, number>()

  constructor(private readonly marginMs: number) {}

  /** The agent-clock instant at which `g` stops allowing writes (may already be past). */
  expiryOf(g: LeaseGrant, agentNow: number): number {
    const seen = agentNow - g.sentAtMs
    const prev = this.offsets.get(g.controller)
    const offset = prev === undefined ? seen : Math.min(prev, seen)
    this.offsets.delete(g.controller)
    this.offsets.set(g.controller, offset)
    while (this.offsets.size > MAX_CONTROLLERS) this.offsets.delete(this.offsets.keys().next().value as string)
    return g.sentAtMs + offset + g.leaseMs - this.marginMs
  }

  /** The offset kept for a controller instance (tests, status). */
  offsetOf(controller: string): number | undefined {
    return this.offsets.get(controller)
  }
}

/**
 * The lease after a grant: grants can arrive out of order (parallel HTTP
 * requests), and each alone is safe, so the later expiry wins.
 */
export function extendLease(current: Lease | null, g: LeaseGrant, expiresAt: number): Lease {
  if (current !== null && current.expiresAt >= expiresAt) return { ...current, holder: g.controller, term: Math.max(current.term, g.term) }
  return { holder: g.controller, term: g.term, leaseMs: g.leaseMs, expiresAt }
}

/** Everything the write decision depends on, read at one instant. */
export interface WriteSnapshot {
  /** agent monotonic ms */
  now: number
  controlled: boolean
  /** why this node is fenced (a newer epoch exists), or null */
  fenced: string | null
  lease: Lease | null
  /** end of writability the standbys' failsafe confirmations grant, or null when one is missing */
  failsafeUntil: number | null
}

export type WriteVerdict =
  | { ok: true; via: 'uncontrolled' | 'lease' | 'failsafe' }
  | { ok: false; code: 'ERR_FENCED' | 'ERR_LEASE_EXPIRED'; reason: string }

/** May a client write be accepted now? (invariant 6) */
export function decideWrite(s: WriteSnapshot): WriteVerdict {
  if (s.fenced !== null) return { ok: false, code: 'ERR_FENCED', reason: s.fenced }
  if (!s.controlled) return { ok: true, via: 'uncontrolled' }
  if (s.lease !== null && s.now < s.lease.expiresAt) return { ok: true, via: 'lease' }
  if (s.failsafeUntil !== null && s.now < s.failsafeUntil) return { ok: true, via: 'failsafe' }
  const reason =
    s.lease === null
      ? 'under a controller and no lease granted since the agent started'
      : `lease from ${s.lease.holder} expired ${Math.round(s.now - s.lease.expiresAt)} ms ago and not every standby confirms the failsafe`
  return { ok: false, code: 'ERR_LEASE_EXPIRED', reason }
}

/** Reads and checks a grant's fields from a JSON body; `epoch` is optional where the caller supplies it. */
export function parseGrant(body: Record<string, unknown>, where: string, epoch?: number): LeaseGrant {
  const bad = (field: string, want: string): never => {
    throw new BlockrepError('ERR_USAGE', `${where}.${field}: expected ${want}, got ${JSON.stringify(body[field]) ?? 'nothing'}`, { context: { field } })
  }
  const controller = body.controller
  if (typeof controller !== 'string' || controller.length === 0 || controller.length > 256) bad('controller', 'a controller id (1..256 characters)')
  const num = (field: string, ok: (n: number) => boolean, want: string): number => {
    const v = body[field]
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) bad(field, want)
    return v as number
  }
  const term = num('term', (n) => Number.isSafeInteger(n) && n >= 0, 'an integer ≥ 0')
  const e = epoch ?? num('epoch', (n) => Number.isSafeInteger(n) && n >= 0, 'an integer ≥ 0')
  const leaseMs = num('leaseMs', (n) => n > 0 && n <= 3_600_000, 'a number of ms in (0, 3600000]')
  const sentAtMs = num('sentAtMs', (n) => n >= 0, 'a monotonic time in ms ≥ 0')
  return { controller: controller as string, term, epoch: e, leaseMs, sentAtMs }
}
