/**
 * What a streaming link has sent and the peer has not acknowledged yet (the
 * bounded window), and the writers waiting for the peer's acknowledgement of a
 * seq (sync protocol, verify's catch-up).
 */
export class InFlight {
  /** payload bytes sent and not acknowledged */
  bytes = 0
  private entries: { seq: number; bytes: number }[] = []
  private waiters: { seq: number; resolve: () => void }[] = []

  sent(seq: number, bytes: number): void {
    this.entries.push({ seq, bytes })
    this.bytes += bytes
  }

  /** The peer acknowledged every seq ≤ `seq`: frees the window and wakes the writers waiting for it. */
  acked(seq: number): void {
    while (this.entries.length && this.entries[0].seq <= seq) this.bytes -= this.entries.shift()!.bytes
    if (this.waiters.length === 0) return
    const keep: typeof this.waiters = []
    for (const w of this.waiters) (w.seq <= seq ? w.resolve() : keep.push(w))
    this.waiters = keep
  }

  /** Resolves when `seq` is acknowledged, or when the connection ends. */
  waitFor(seq: number): Promise<void> {
    return new Promise((resolve) => this.waiters.push({ seq, resolve }))
  }

  /** The connection ended: nothing is in flight, and waiting writers complete with local durability (degraded, as DRBD does). */
  clear(): void {
    this.entries = []
    this.bytes = 0
    for (const w of this.waiters) w.resolve()
    this.waiters = []
  }
}
