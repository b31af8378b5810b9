/**
 * The failsafe over the replication link (Patroni's failsafe idea, DESIGN
 * "Leases"): while a primary under a controller cannot renew its lease it
 * keeps writing only while every standby confirms it knows no newer epoch and
 * has not been promoted.
 *
 * Timing, all on monotonic clocks:
 * - the primary sends FAILSAFE at `t` (its clock); a FAILSAFE_OK for it
 *   extends that standby's confirmation to `t + windowMs − marginMs`;
 * - the primary is writable under the failsafe until the minimum of those
 *   over every configured standby (one missing confirmation = not writable);
 * - a standby that sent a confirmation at `c` (its clock) accepts no write as a
 *   promoted primary before `c + windowMs`, and stops confirming as soon as a
 *   promotion is requested. Since `c` happens after `t` in real time, the old
 *   primary's last writable instant comes strictly before the new primary's
 *   first write (by `marginMs`, which also covers clock-rate drift).
 *
 * Pure bookkeeping with the clock passed in; the links and the session only
 * report to it.
 */
export class FailsafeTracker {
  /** primary side: per standby, the end of writability its last confirmation grants */
  private readonly confirmed = new Map<string, { until: number; at: number }>()
  /** standby side: no write as primary before this (monotonic ms) */
  private holdUntil = 0
  private promoting = false
  /** ask standbys for confirmations (set while the node is under a controller) */
  enabled = false
  /** how long a confirmation counts (ms); 0 = failsafe off */
  windowMs = 0

  constructor(
    private readonly now: () => number,
    private readonly marginMs: number,
    /** the standbys every one of which must confirm */
    private readonly peers: () => readonly string[],
  ) {}

  /** How often a link asks: several times within a window, never slower than the heartbeat. */
  intervalMs(heartbeatMs: number): number {
    return Math.max(20, Math.min(heartbeatMs, Math.floor((this.windowMs - this.marginMs) / 4)))
  }

  /** The primary's send time to put in a FAILSAFE frame (whole ms, rounded down: never later than the real send). */
  stamp(): number {
    return Math.floor(this.now())
  }

  /** Primary: `peer` answered the FAILSAFE sent at `t`. A refusal withdraws its earlier confirmation. */
  onConfirm(peer: string, t: number, promised: boolean, windowMs: number): void {
    if (!promised) {
      this.confirmed.delete(peer)
      return
    }
    const until = t + windowMs - this.marginMs
    const prev = this.confirmed.get(peer)
    if (!prev || until > prev.until) this.confirmed.set(peer, { until, at: this.now() })
  }

  /** Primary: forget a standby's confirmation (the link dropped: the one already given still counts until it ends). */
  forget(peer: string): void {
    this.confirmed.delete(peer)
  }

  /** Primary: until when every standby's confirmation makes writes allowed; null when one is missing or there are no standbys. */
  validUntil(): number | null {
    const peers = this.peers()
    if (peers.length === 0 || this.windowMs <= 0) return null
    let min = Infinity
    for (const p of peers) {
      const c = this.confirmed.get(p)
      if (!c) return null
      min = Math.min(min, c.until)
    }
    return min
  }

  /** The standbys whose confirmation is still running now. */
  confirmedBy(): string[] {
    const now = this.now()
    return [...this.confirmed].filter(([, c]) => c.until > now).map(([p]) => p).sort()
  }

  /**
   * Standby: answers a FAILSAFE. Promises only when no promotion is under way,
   * this node is a standby and knows no epoch newer than the primary's; a
   * promise holds this node back from writing as primary for `windowMs`.
   */
  confirm(primaryEpoch: number, windowMs: number, knownEpoch: number, isStandby: boolean): boolean {
    const promised = !this.promoting && isStandby && knownEpoch <= primaryEpoch
    if (promised) this.holdUntil = Math.max(this.holdUntil, this.now() + windowMs)
    return promised
  }

  /** Standby: a promotion is requested. From now on it confirms nothing; returns how long to wait before the first write. */
  beginPromotion(): number {
    this.promoting = true
    return Math.max(0, this.holdUntil - this.now())
  }

  /** The promotion finished or failed: confirmations may be given again (as a standby). */
  endPromotion(): void {
    this.promoting = false
  }

  /** Standby: the end of the hold its confirmations put on a promotion (monotonic ms; 0 = none). */
  get hold(): number {
    return this.holdUntil
  }
}
