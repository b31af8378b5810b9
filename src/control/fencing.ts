/**
 * The fencing timing rule (docs/control-plane.md "Fencing inequality"): the
 * controller may promote another node only when, on its own monotonic clock,
 *
 *   now ≥ lastGrantSentAt + leaseMs   (the last grant sent to the old primary, answered or not)
 *   now ≥ takeoverAt + leaseMs        (a new leader assumes its predecessor granted just before dying)
 *
 * The old primary stops writing at sentAt + offset + leaseMs − marginMs on its
 * clock, strictly before. A pure function of the readings.
 */
export interface FenceInput {
  now: number
  /** monotonic time the last lease grant to the old primary was sent; null if none was */
  lastGrantSentAt: number | null
  /** monotonic time this controller took over leadership */
  takeoverAt: number
  leaseMs: number
}

export interface FenceVerdict {
  mayPromote: boolean
  /** the earliest monotonic time a promotion is allowed */
  until: number
  /** ms left to wait (0 when allowed) */
  waitMs: number
  reason: string
}

export function fenceVerdict(i: FenceInput): FenceVerdict {
  const afterGrant = i.lastGrantSentAt === null ? -Infinity : i.lastGrantSentAt + i.leaseMs
  const afterTakeover = i.takeoverAt + i.leaseMs
  const until = Math.max(afterGrant, afterTakeover)
  const waitMs = Math.max(0, until - i.now)
  const which = afterGrant >= afterTakeover ? `the last lease grant (sent at ${fmt(i.lastGrantSentAt)}) + ${i.leaseMs} ms` : `the leadership takeover (at ${fmt(i.takeoverAt)}) + ${i.leaseMs} ms`
  return waitMs === 0
    ? { mayPromote: true, until, waitMs: 0, reason: `the old primary's lease has run out: now ≥ ${which}` }
    : { mayPromote: false, until, waitMs, reason: `waiting ${Math.ceil(waitMs)} ms for ${which}` }
}

function fmt(n: number | null): string {
  return n === null ? 'never' : n.toFixed(1)
}
