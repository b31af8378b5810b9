/**
 * Group commit: many writers wait for "seq s is durable"; one fdatasync at a
 * time covers every seq appended before it started. Measured here: one
 * fdatasync costs ~2 ms, so batching is what makes durable writes affordable.
 */
export class GroupCommit {
  private durable: number
  private syncing = false
  private waiters: { seq: number; resolve: () => void; reject: (e: Error) => void }[] = []
  private failed: Error | null = null
  private pendingBytes = 0
  private generation = 0
  private timer: NodeJS.Timeout | null = null

  /**
   * @param sync durably persists everything appended so far
   * @param head returns the newest appended seq (captured when a sync starts)
   */
  constructor(
    private readonly sync: () => Promise<void>,
    private readonly head: () => number,
    initialDurable: number,
    /** wait this long before a sync to let more writes join it (0 = at once) */
    private readonly delayMs = 0,
    /** with a delay: start the sync early once this many bytes wait */
    private readonly maxBatchBytes = Infinity,
  ) {
    this.durable = initialDurable
  }

  get durableSeq(): number {
    return this.durable
  }

  /** Resolves once every seq ≤ `seq` is durable. */
  wait(seq: number): Promise<void> {
    if (this.failed) return Promise.reject(this.failed)
    if (seq <= this.durable) return Promise.resolve()
    return new Promise((resolve, reject) => {
      this.waiters.push({ seq, resolve, reject })
      this.kick()
    })
  }

  /** Everything up to `seq` is durable now (after a synchronous sync by the owner). */
  markDurable(seq: number): void {
    if (seq > this.durable) this.durable = seq
    this.release()
  }

  /**
   * The journal was reset so its head is `seq` (it may go down, e.g. a rejoining
   * old primary reset to the new primary's g_k): durable becomes exactly `seq`,
   * and a sync already in flight no longer counts for the old head.
   */
  reset(seq: number): void {
    this.generation++
    this.durable = seq
    this.release()
  }

  /** Bytes appended since the last sync started; with a delay, reaching maxBatchBytes starts the sync early. */
  noteAppended(bytes: number): void {
    this.pendingBytes += bytes
    if (this.timer && this.pendingBytes >= this.maxBatchBytes) {
      clearTimeout(this.timer)
      this.timer = null
      this.startSync()
    }
  }

  private kick(): void {
    if (this.syncing || this.waiters.length === 0) return
    this.syncing = true
    if (this.delayMs > 0 && this.pendingBytes < this.maxBatchBytes) {
      this.timer = setTimeout(() => {
        this.timer = null
        this.startSync()
      }, this.delayMs)
    } else {
      this.startSync()
    }
  }

  private startSync(): void {
    const target = this.head()
    const generation = this.generation
    this.pendingBytes = 0
    // a sync that throws at once (journal closed, EIO) must reach the waiters like one that rejects,
    // not escape from the previous sync's callback as an unhandled rejection (which ends the process)
    let syncing: Promise<void>
    try {
      syncing = this.sync()
    } catch (err) {
      syncing = Promise.reject(err)
    }
    syncing.then(
      () => {
        this.syncing = false
        if (generation === this.generation && target > this.durable) this.durable = target
        this.release()
        this.kick()
      },
      (err: Error) => {
        this.syncing = false
        this.failed = err
        const ws = this.waiters
        this.waiters = []
        for (const w of ws) w.reject(err)
      },
    )
  }

  private release(): void {
    if (this.waiters.length === 0) return
    const keep: typeof this.waiters = []
    for (const w of this.waiters) {
      if (w.seq <= this.durable) w.resolve()
      else keep.push(w)
    }
    this.waiters = keep
  }
}
