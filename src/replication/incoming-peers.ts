import type { LastMode, PeerContact } from './status-types.js'

/** What a standby remembers of one configured peer between sessions. */
export interface IncomingPeerRecord {
  /** the last reason a session from this peer was refused or ended, in words */
  lastError: string | null
  /** ms epoch */
  lastErrorAt: number | null
  /** the mode of the last session this peer ran */
  lastMode: LastMode | null
  /** the last nudge or session HELLO: reachable, and as what */
  contact: PeerContact | null
  /** ms epoch: when the last session from it started or ended (or the agent started) */
  since: number
}

/**
 * A standby's memory of its configured peers: the primary dials a standby,
 * so without it a standby whose primary is absent, refuses it or was demoted
 * would know nothing to say. Fed by the sessions (refusals, ERROR frames,
 * the end of a session) and by the nudges (who answers, and as what role).
 */
export class IncomingPeers {
  private readonly records = new Map<string, IncomingPeerRecord>()

  constructor(
    peers: readonly string[],
    private readonly now: () => number = Date.now,
  ) {
    for (const p of peers) this.records.set(p, { lastError: null, lastErrorAt: null, lastMode: null, contact: null, since: now() })
  }

  has(peer: string): boolean {
    return this.records.has(peer)
  }

  get(peer: string): IncomingPeerRecord | null {
    return this.records.get(peer) ?? null
  }

  /** A session from `peer` ended or was refused for this reason. */
  error(peer: string, message: string): void {
    const r = this.records.get(peer)
    if (!r) return
    r.lastError = message
    r.lastErrorAt = this.now()
    r.since = this.now()
  }

  /** A session from `peer` authenticated (it announced itself as primary). */
  sessionStarted(peer: string): void {
    const r = this.records.get(peer)
    if (!r) return
    r.since = this.now()
    r.contact = { at: this.now(), reachable: true, role: 'primary', error: null }
  }

  /** A session from `peer` ended without an error (the primary closed it). */
  sessionEnded(peer: string, mode: LastMode | null): void {
    const r = this.records.get(peer)
    if (!r) return
    if (mode !== null) r.lastMode = mode
    r.since = this.now()
  }

  mode(peer: string, mode: LastMode): void {
    const r = this.records.get(peer)
    if (r) r.lastMode = mode
  }

  /** The outcome of contacting `peer` (a nudge): its announced role, or why it failed. */
  contact(peer: string, c: { reachable: true; role: 'primary' | 'standby' } | { reachable: false; error: string }): void {
    const r = this.records.get(peer)
    if (!r) return
    r.contact = c.reachable
      ? { at: this.now(), reachable: true, role: c.role, error: null }
      : { at: this.now(), reachable: false, role: null, error: c.error.replace(/^connect to \S+ failed: /, '') }
  }
}
