import type { JournalEntryInfo, JournalRecord } from '../storage/types.js'
import type { NodeStore } from './node-store.js'
import { GroupCommit } from './group-commit.js'
import { BlockrepError } from '../util/errors.js'
import { crc32c } from '../util/crc32c.js'
import type { Logger } from '../util/log.js'

/** What the write path needs from each replication link on the primary. */
export interface WriteListener {
  readonly nodeId: string
  /** a new record is in the journal (the link sends it now if it is caught up) */
  onAppend(rec: JournalRecord): void
  /** resolves when this peer (if it is a streaming sync peer) has durably applied seq, or at once otherwise */
  waitDurable(seq: number): Promise<void>
  /** the peer's acknowledged seq as known right now (may be newer than the persisted one) */
  ackedSeq(): number
  /** these records are about to leave the journal */
  onEvicted?(evicted: JournalEntryInfo[]): void
}

const RECENT_BYTES = 32 * 1024 * 1024

/**
 * The primary's write path: seq → journal → data → every link, then group
 * commit and, for sync peers, their durable apply (invariant 2). Also the
 * journal-reclaim hook that keeps invariant 1: before a record leaves the
 * journal, every peer that has not acknowledged it gets its blocks in its dirty
 * bitmap, persisted together with durable data.
 */
export class WritePath {
  readonly commit: GroupCommit
  private readonly listeners = new Set<WriteListener>()
  /** recent records kept in memory so streaming links send without reading back */
  private readonly recent = new Map<number, JournalRecord>()
  private recentBytes = 0
  private throttleBytesPerSec = 0
  private readonly throttles = new Map<string, number>()
  private throttleNext = 0
  private writable: () => BlockrepError | null = () => null
  /**
   * Run once a write is durable, just before it is acknowledged: a write whose
   * lease ran out (or whose node was fenced) while it waited for the sync must
   * not be reported as if the lease held. The refusal becomes EIO: the record
   * stays in the journal (it may reach standbys, or become backlog), the client
   * learns nothing was promised.
   */
  ackCheck: ((seq: number) => BlockrepError | null) | null = null
  /** called with each acknowledged write's latency in seconds (metrics) */
  onLatency: ((seconds: number) => void) | null = null

  constructor(
    private readonly store: NodeStore,
    private readonly log: Logger,
    batching: { groupCommitMs: number; maxBatchBytes: number } = { groupCommitMs: 0, maxBatchBytes: Infinity },
  ) {
    this.commit = new GroupCommit(() => store.journal.sync(), () => store.journal.headSeq, store.journal.headSeq, batching.groupCommitMs, batching.maxBatchBytes)
    store.journal.onReclaim = (evicted: JournalEntryInfo[]) => this.onReclaim(evicted)
  }

  /** A check run before every write (role, lease, shutdown); returns the reason to refuse, or null. */
  setWritableCheck(check: () => BlockrepError | null): void {
    this.writable = check
  }

  addListener(l: WriteListener): void {
    this.listeners.add(l)
  }

  removeListener(l: WriteListener): void {
    this.listeners.delete(l)
  }

  /** Record `seq` if still held in memory, else from the journal, else null (reclaimed). */
  record(seq: number): JournalRecord | null {
    const r = this.recent.get(seq)
    if (r) return r
    if (!this.store.journal.has(seq)) return null
    return this.store.journal.readOne(seq)
  }

  /**
   * Slow client writes down to `bytesPerSec` (0 = off) so `peer`'s resync
   * rounds converge. Each peer asks for itself; the slowest request wins, so
   * one peer finishing never lifts the throttle another still needs.
   */
  setThrottle(peer: string, bytesPerSec: number): void {
    if (bytesPerSec > 0) this.throttles.set(peer, bytesPerSec)
    else this.throttles.delete(peer)
    const rate = this.throttles.size ? Math.min(...this.throttles.values()) : 0
    if (rate !== this.throttleBytesPerSec) {
      this.log.info({ bytesPerSec: rate, peers: [...this.throttles.keys()] }, rate ? 'throttling client writes so resync rounds converge' : 'client write throttle off')
    }
    this.throttleBytesPerSec = rate
  }

  get throttled(): boolean {
    return this.throttleBytesPerSec > 0
  }

  /**
   * Writes `data` at `offset` (zero-fill when data is null); resolves with
   * the last seq it took once durable per invariant 2.
   *
   * A write larger than the journal's record limit becomes several records
   * with consecutive seqs, each a write of its own range (a zero-fill stays
   * one header-only record). The records are appended one at a time, each
   * followed by its data write, so a reclaim the write itself causes only
   * evicts records whose data is in the volume. A write larger than a
   * quarter of the journal goes in groups of that size, each durable
   * (locally and on the streaming sync peers) before the next is appended:
   * one client write never wraps the journal past records a peer still
   * needs. The client gets its reply only when every record is durable; if
   * the node crashes before, a prefix of the records may survive, as a disk
   * may keep part of a write it never acknowledged.
   */
  async write(offset: number, length: number, data: Buffer | null): Promise<number> {
    const refuse = this.writable()
    if (refuse) throw refuse
    const vol = this.store.volume
    if (offset < 0 || length < 0 || offset + length > vol.size) {
      throw new BlockrepError('ERR_NO_SPACE', `write of ${length} bytes at ${offset} passes the end of the ${vol.size}-byte volume`, { context: { offset, length, size: vol.size } })
    }
    const started = performance.now()
    const journal = this.store.journal
    const piece = data ? journal.recordLimit : Math.max(1, length)
    const group = Math.max(piece, Math.floor(journal.capacity / 4))
    let last = journal.headSeq
    let done = 0
    do {
      const n = Math.min(length - done, group)
      if (this.throttleBytesPerSec > 0) await this.throttle(n)
      const again = this.writable()
      if (again) throw again
      for (let at = done; at < done + n || at === 0; at += piece) {
        const len = Math.min(piece, done + n - at)
        last = this.appendOne(offset + at, len, data ? data.subarray(at, at + len) : null)
        if (len === 0) break
      }
      done += n
      if (done < length) await this.durable(last)
    } while (done < length)
    await this.durable(last)
    const late = this.ackCheck?.(last) ?? null
    if (late) throw new BlockrepError('ERR_IO', `write seq ${last} is durable but not acknowledged: ${late.message}`, { cause: late, context: { seq: last, reason: late.code } })
    this.onLatency?.((performance.now() - started) / 1000)
    return last
  }

  /** One record: journal, data, every link. Returns its seq. */
  private appendOne(offset: number, length: number, data: Buffer | null): number {
    // one crc for the journal record and every standby's frame
    const rec: JournalRecord = { seq: this.store.journal.headSeq + 1, epoch: this.store.epoch, offset, length, data, crc: data ? crc32c(data) : 0 }
    this.store.journal.append(rec)
    if (data) this.store.volume.write(offset, data)
    else this.store.volume.zero(offset, length)
    this.remember(rec)
    this.commit.noteAppended(length)
    for (const l of this.listeners) l.onAppend(rec)
    return rec.seq
  }

  /** Resolves once `seq` is durable locally and on every streaming sync peer. */
  private async durable(seq: number): Promise<void> {
    await this.commit.wait(seq)
    const peers = [...this.listeners].map((l) => l.waitDurable(seq))
    if (peers.length) await Promise.all(peers)
  }

  /** Every acknowledged write is durable locally and on every streaming sync peer. */
  async flush(): Promise<void> {
    const head = this.store.journal.headSeq
    await this.commit.wait(head)
    await Promise.all([...this.listeners].map((l) => l.waitDurable(head)))
  }

  private async throttle(bytes: number): Promise<void> {
    const now = Date.now()
    const start = Math.max(now, this.throttleNext)
    this.throttleNext = start + (bytes / this.throttleBytesPerSec) * 1000
    if (start > now) await new Promise((r) => setTimeout(r, start - now))
  }

  private remember(rec: JournalRecord): void {
    this.recent.set(rec.seq, rec)
    this.recentBytes += rec.length
    while (this.recentBytes > RECENT_BYTES) {
      const oldest = this.recent.keys().next().value as number
      this.recentBytes -= this.recent.get(oldest)!.length
      this.recent.delete(oldest)
    }
  }

  /** Invariant 1: runs synchronously before the journal overwrites `evicted`. */
  private onReclaim(evicted: JournalEntryInfo[]): void {
    const store = this.store
    const bs = store.meta.blockSize
    const acked = new Map<string, number>()
    for (const l of this.listeners) {
      acked.set(l.nodeId, l.ackedSeq())
      l.onEvicted?.(evicted)
    }
    for (const peer of Object.values(store.meta.peers)) {
      const ack = Math.max(peer.ackedSeq, acked.get(peer.nodeId) ?? 0)
      peer.ackedSeq = ack
      for (const e of evicted) {
        if (e.seq <= ack || e.length === 0) continue
        peer.dirty.addRange(Math.floor(e.offset / bs), Math.ceil((e.offset + e.length) / bs))
      }
    }
    for (const e of evicted) this.dropRecent(e.seq)
    // the evicted records' data must be durable before the journal forgets them
    store.volume.flushSync()
    store.saveMeta()
  }

  private dropRecent(seq: number): void {
    const r = this.recent.get(seq)
    if (r) {
      this.recentBytes -= r.length
      this.recent.delete(seq)
    }
  }
}

/** Block range [first, end) touched by a byte range. */
export function blockSpan(offset: number, length: number, blockSize: number): [number, number] {
  return [Math.floor(offset / blockSize), Math.ceil((offset + length) / blockSize)]
}
