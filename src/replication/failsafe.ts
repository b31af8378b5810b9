import type { FailsafeMsg, FailsafeOkMsg } from '../wire/messages.js'

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

/** FAILSAFE requests a link keeps waiting for their answer. */
const MAX_PENDING = 64

/**
 * One link's side of the failsafe on the primary: while the tracker is
 * enabled, sends FAILSAFE several times a window and turns each FAILSAFE_OK
 * into a confirmation (only for a request actually sent, with the window that
 * request asked for).
 */
export class FailsafeAsker {
  private timer: NodeJS.Timeout | null = null
  /** send stamp → the window that request asked for */
  private readonly pending = new Map<number, number>()

  constructor(
    private readonly fs: FailsafeTracker,
    private readonly peer: string,
    private readonly heartbeatMs: number,
  ) {}

  /** Starts asking over a connected session; `send` returns nothing useful once the session is closed. */
  start(send: (m: FailsafeMsg) => void, epoch: () => number, closed: () => boolean): void {
    const tick = (): void => {
      if (closed()) return
      if (this.fs.enabled && this.fs.windowMs > 0) {
        const t = this.fs.stamp()
        this.pending.set(t, this.fs.windowMs)
        while (this.pending.size > MAX_PENDING) this.pending.delete(this.pending.keys().next().value as number)
        send({ type: 'FAILSAFE', t, epoch: epoch(), windowMs: this.fs.windowMs })
      }
      this.timer = setTimeout(tick, this.fs.intervalMs(this.heartbeatMs))
    }
    tick()
  }

  /** The session ended: no more requests, and this standby's confirmation is withdrawn. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.pending.clear()
    this.fs.forget(this.peer)
  }

  /** A FAILSAFE_OK from the standby; `ownEpoch` is this primary's epoch (a newer one in the answer is not a promise). */
  answer(m: FailsafeOkMsg, ownEpoch: number): void {
    const windowMs = this.pending.get(m.t)
    if (windowMs === undefined) return
    for (const k of this.pending.keys()) {
      if (k > m.t) break
      this.pending.delete(k)
    }
    this.fs.onConfirm(this.peer, m.t, m.promised && m.epoch <= ownEpoch, windowMs)
  }
}
