import fs from 'node:fs'
import { crc32c } from '../util/crc32c.js'
import { BlockrepError } from '../util/errors.js'
import type { JournalEntryInfo, JournalRecord } from './types.js'
import { HEADER_SIZE, MAX_RECORD_PAYLOAD, RECORD_ALIGN, RING_BASE, encodeHeader, recordSize, type Checkpoint } from './journal-format.js'
import { placeRecord, validateRecord } from './journal-ring.js'
import { openJournalFile, type Entry } from './journal-recovery.js'
import { freshChain, readRecord, syncFd, writeGather, writeSuper } from './journal-io.js'

export { replayJournal } from './journal-replay.js'

/** Options for {@link Journal.open}. */
export interface JournalOpenOptions {
  /** Ring capacity in bytes (rounded up to 4 KiB). Required to create. */
  size?: number
  /** Create the file when it is missing or empty. */
  create?: boolean
}

/** What the recovery scan found when the journal was opened. */
export interface JournalRecovery {
  records: number
  /** bytes of a half-written last record that was dropped (0: the log ended cleanly) */
  droppedTornBytes: number
  headSeq: number
  tailSeq: number
}

const PAD = Buffer.alloc(RECORD_ALIGN)

function info(e: Entry): JournalEntryInfo {
  return { seq: e.seq, epoch: e.epoch, offset: e.offset, length: e.length, zero: e.zero }
}

/**
 * The on-disk ring of the most recent writes (format in journal-format.ts).
 * Appends are synchronous pwrite(v)s and not durable until sync(): callers
 * batch appends and sync once (group commit). The superblock is written only
 * when the tail moves (reclaim, reset), never per append; the head is found
 * again at open by scanning the chain of records.
 */
export class Journal {
  readonly path: string
  readonly recovery: JournalRecovery
  /**
   * Called synchronously with the records about to be overwritten, oldest
   * first, BEFORE the journal forgets them. The owner must make the data file
   * durable for them and persist dirty bitmaps for every peer that has not
   * acknowledged them (invariant 1). If it throws, the append fails and the
   * journal is unchanged.
   */
  onReclaim: ((evicted: JournalEntryInfo[]) => void) | null = null

  private fd: number
  private readonly ring: number
  private cp: Checkpoint
  /** held records are index[first..] */
  private index: Entry[]
  private first = 0
  private nextSeq: number
  private nextPos: number
  private nextPrev: number
  /** salt of the records this session appends (journal-format.ts): a new one per open and truncateAfter */
  private salt = freshChain()

  private constructor(file: string, fd: number, cp: Checkpoint, entries: Entry[], droppedTornBytes: number) {
    this.path = file
    this.fd = fd
    this.ring = cp.ringSize
    this.cp = cp
    this.index = entries
    const last = entries[entries.length - 1]
    this.nextSeq = last ? last.seq + 1 : cp.tailSeq
    this.nextPos = last ? last.pos + last.size : cp.tailPos
    this.nextPrev = last ? last.hcrc : cp.tailPrev
    this.recovery = { records: entries.length, droppedTornBytes, headSeq: this.headSeq, tailSeq: this.tailSeq }
  }

  /**
   * Opens the journal at `file` and recovers its head by scanning from the
   * checkpoint. With `create` and `size`, a missing or empty file is
   * initialised. Throws ERR_IO for a missing file, ERR_JOURNAL_CORRUPT when no
   * superblock slot verifies, ERR_CONFIG when `size` differs from the file's.
   */
  static open(file: string, opts: JournalOpenOptions): Journal {
    const { fd, cp, entries, droppedTornBytes } = openJournalFile(file, opts.size, opts.create === true)
    return new Journal(file, fd, cp, entries, droppedTornBytes)
  }

  /** Newest seq held; tailSeq-1 when empty (0 for a new journal). */
  get headSeq(): number {
    return this.nextSeq - 1
  }

  /** Oldest seq held (headSeq+1 when empty). */
  get tailSeq(): number {
    return this.first < this.index.length ? this.index[this.first].seq : this.nextSeq
  }

  /** Ring capacity in bytes. */
  get capacity(): number {
    return this.ring
  }

  /**
   * The largest payload a writer should put in one record: at most
   * MAX_RECORD_PAYLOAD, and at most a quarter of the ring, so that a client
   * write of any size is journaled as several records that each leave room
   * for others (write-path.ts), and so that the records of a primary with a
   * big journal also fit a standby's small one (every journal `init` accepts
   * is at least 1 MiB).
   */
  get recordLimit(): number {
    return Math.min(MAX_RECORD_PAYLOAD, Math.max(RECORD_ALIGN, Math.floor(this.ring / 4 / RECORD_ALIGN) * RECORD_ALIGN))
  }

  /** True when a record of `length` bytes (zero: no payload) fits this ring at all. */
  fits(length: number, zero: boolean): boolean {
    return recordSize(length, zero) <= this.ring
  }

  /** Ring bytes taken by held records, including a skipped gap at the end of the ring. */
  get used(): number {
    if (this.first >= this.index.length) return 0
    const d = this.nextPos - this.index[this.first].pos
    return d > 0 ? d : d + this.ring
  }

  /** True when seq is held: tailSeq <= seq <= headSeq. */
  has(seq: number): boolean {
    return seq >= this.tailSeq && seq <= this.headSeq
  }

  /** Appends one record (sync write, not durable until sync()). `rec.seq` must be headSeq+1. */
  append(rec: JournalRecord): void {
    this.appendMany([rec])
  }

  /**
   * Appends records in order with as few writes as possible: one pwritev per
   * run of records that lie contiguously in the ring. The batch is validated
   * before anything is written; if onReclaim or a write fails midway, the
   * records before that point stay appended.
   */
  appendMany(recs: JournalRecord[]): void {
    this.checkOpen()
    // Validate the whole batch first so a malformed record leaves nothing half-appended.
    recs.forEach((rec, i) => validateRecord(rec, this.nextSeq + i, this.ring, this.path))
    const headers = Buffer.allocUnsafe(HEADER_SIZE * recs.length)
    let iov: Uint8Array[] = []
    let runPos = -1
    let runEnd = -1
    let runStart = this.index.length
    const saved = { nextSeq: this.nextSeq, nextPos: this.nextPos, nextPrev: this.nextPrev }
    const flushRun = (): void => {
      if (iov.length === 0) return
      try {
        writeGather(this.fd, iov, RING_BASE + runPos, this.path)
      } catch (err) {
        // forget the run that did not reach the file; earlier runs did
        this.index.length = runStart
        Object.assign(this, saved)
        throw err
      }
      iov = []
      runStart = this.index.length
      Object.assign(saved, { nextSeq: this.nextSeq, nextPos: this.nextPos, nextPrev: this.nextPrev })
    }
    for (let i = 0; i < recs.length; i++) {
      const rec = recs[i]
      const zero = rec.data === null
      const size = recordSize(rec.length, zero)
      let pos = this.place(size, this.first)
      if (pos < 0) {
        flushRun()
        this.reclaim(size)
        runStart = this.index.length
        pos = this.place(size, this.first)
      }
      if (iov.length === 0 || pos !== runEnd || iov.length >= 1020) {
        flushRun()
        runPos = pos
      }
      const dataCrc = zero ? 0 : (rec.crc ?? crc32c(rec.data!))
      const h = headers.subarray(i * HEADER_SIZE, (i + 1) * HEADER_SIZE)
      const hcrc = encodeHeader(h, 0, { seq: rec.seq, epoch: rec.epoch, offset: rec.offset, length: rec.length, zero, dataCrc, prev: this.nextPrev, pos }, this.salt)
      iov.push(h)
      if (!zero && rec.length > 0) iov.push(rec.data!)
      const pad = size - HEADER_SIZE - (zero ? 0 : rec.length)
      if (pad > 0) iov.push(PAD.subarray(0, pad))
      this.index.push({ seq: rec.seq, epoch: rec.epoch, offset: rec.offset, length: rec.length, zero, pos, size, dataCrc, hcrc })
      this.nextSeq = rec.seq + 1
      this.nextPos = pos + size
      this.nextPrev = hcrc
      runEnd = pos + size
    }
    flushRun()
  }

  /** Where a record of `size` bytes goes if the tail were index[tailIdx]; -1 when it does not fit. */
  private place(size: number, tailIdx: number): number {
    return placeRecord(this.nextPos, size, this.ring, tailIdx < this.index.length ? this.index[tailIdx].pos : null)
  }

  /** Evicts the oldest records: at least 1/8 of the ring, and enough for `size`. */
  private reclaim(size: number): void {
    const chunk = Math.max(this.ring >>> 3, size)
    let k = this.first
    let freed = 0
    while (k < this.index.length) {
      freed += this.index[k].size
      k++
      if (freed >= chunk && this.place(size, k) >= 0) break
    }
    const evicted = this.index.slice(this.first, k)
    this.onReclaim?.(evicted.map(info))
    // The checkpoint must move past the evicted records durably before any of them is overwritten.
    this.fdatasync()
    this.first = k
    const t = this.index[k]
    if (!t) {
      // The ring is empty: the checkpoint names where the record being appended will go (0 when it
      // does not fit before the end), so that recovery finds it at the checkpoint's own position.
      this.nextPos = placeRecord(this.nextPos, size, this.ring, null)
    }
    this.writeCheckpoint(t ? { tailSeq: t.seq, tailPos: t.pos, tailPrev: this.index[k - 1].hcrc, tailEpoch: t.epoch }
      : { tailSeq: this.nextSeq, tailPos: this.nextPos, tailPrev: this.nextPrev, tailEpoch: 0 })
    if (this.first > 1024 && this.first * 2 > this.index.length) {
      this.index = this.index.slice(this.first)
      this.first = 0
    }
  }

  private writeCheckpoint(c: Pick<Checkpoint, 'tailSeq' | 'tailPos' | 'tailPrev' | 'tailEpoch'>): void {
    const cp: Checkpoint = { ...c, generation: this.cp.generation + 1, ringSize: this.ring }
    writeSuper(this.fd, cp, this.path)
    this.cp = cp
  }

  private entry(seq: number): Entry {
    return this.index[this.first + (seq - this.tailSeq)]
  }

  private checkRange(fromSeq: number, toSeq: number): void {
    this.checkOpen()
    if (fromSeq > toSeq) return
    if (!this.has(fromSeq) || !this.has(toSeq)) {
      throw new BlockrepError('ERR_JOURNAL_RANGE', `journal ${this.path} holds [${this.tailSeq}, ${this.headSeq}], not [${fromSeq}, ${toSeq}]`, {
        context: { path: this.path, fromSeq, toSeq, tailSeq: this.tailSeq, headSeq: this.headSeq },
      })
    }
  }

  /** Headers of [fromSeq, toSeq] (empty when fromSeq > toSeq); ERR_JOURNAL_RANGE if not all held. */
  entries(fromSeq: number, toSeq: number): JournalEntryInfo[] {
    this.checkRange(fromSeq, toSeq)
    const out: JournalEntryInfo[] = []
    for (let s = fromSeq; s <= toSeq; s++) out.push(info(this.entry(s)))
    return out
  }

  /** Records [fromSeq, toSeq] in seq order, payload crc verified on every read. */
  read(fromSeq: number, toSeq: number): Generator<JournalRecord> {
    // checked now, not at the first next(): a bad range fails where it is asked for
    this.checkRange(fromSeq, toSeq)
    return this.iterate(fromSeq, toSeq)
  }

  private *iterate(fromSeq: number, toSeq: number): Generator<JournalRecord> {
    // readOne re-checks each seq: a reclaim between two next() calls surfaces as ERR_JOURNAL_RANGE
    for (let s = fromSeq; s <= toSeq; s++) yield this.readOne(s)
  }

  /** One record; ERR_JOURNAL_RANGE if not held, ERR_JOURNAL_CORRUPT if its bytes no longer verify. */
  readOne(seq: number): JournalRecord {
    this.checkRange(seq, seq)
    return readRecord(this.fd, this.entry(seq), this.path)
  }

  /**
   * Drops every record after `seq` (rolls a diverged standby back to the
   * branch point), durably: the first dropped header is wiped and synced so
   * recovery cannot find the old chain again. A no-op when seq >= headSeq.
   */
  truncateAfter(seq: number): void {
    this.checkOpen()
    if (seq >= this.headSeq) return
    if (seq < this.tailSeq - 1) {
      throw new BlockrepError('ERR_JOURNAL_RANGE', `journal ${this.path}: cannot truncate after ${seq}, it holds [${this.tailSeq}, ${this.headSeq}]`, {
        context: { path: this.path, seq, tailSeq: this.tailSeq, headSeq: this.headSeq },
      })
    }
    const dropped = this.entry(seq + 1)
    try {
      fs.writeSync(this.fd, Buffer.alloc(HEADER_SIZE), 0, HEADER_SIZE, RING_BASE + dropped.pos)
    } catch (cause) {
      throw new BlockrepError('ERR_IO', `journal ${this.path}: truncate write failed`, { cause, context: { path: this.path, seq } })
    }
    this.fdatasync()
    // records appended from here must not chain onto the dropped ones if they happen to be identical
    this.salt = freshChain()
    const keep = this.first + (seq + 1 - this.tailSeq)
    const last = keep > this.first ? this.index[keep - 1] : null
    this.index.length = keep
    this.nextSeq = seq + 1
    this.nextPos = last ? last.pos + last.size : this.cp.tailPos
    this.nextPrev = last ? last.hcrc : this.cp.tailPrev
  }

  /**
   * Empties the journal so the next append is `nextSeq` (a standby restarting
   * at the primary's head+1 after a FULL or BITMAP resync). Durable. Does not
   * call onReclaim: the caller is discarding the records on purpose.
   */
  reset(nextSeq: number): void {
    this.checkOpen()
    if (!Number.isSafeInteger(nextSeq) || nextSeq < 1) {
      throw new BlockrepError('ERR_JOURNAL_RANGE', `journal ${this.path}: reset to seq ${nextSeq}`, { context: { path: this.path, seq: nextSeq } })
    }
    // A fresh random chain value: no record left in the ring can claim to follow it.
    const prev = freshChain()
    this.writeCheckpoint({ tailSeq: nextSeq, tailPos: 0, tailPrev: prev, tailEpoch: 0 })
    this.index = []
    this.first = 0
    this.nextSeq = nextSeq
    this.nextPos = 0
    this.nextPrev = prev
  }

  /** fdatasync on the thread pool: the group-commit point. */
  sync(): Promise<void> {
    if (this.fd < 0) return Promise.reject(this.closedError())
    return new Promise((resolve, reject) => {
      fs.fdatasync(this.fd, err => (err ? reject(new BlockrepError('ERR_IO', `journal ${this.path}: fdatasync failed`, { cause: err, context: { path: this.path } })) : resolve()))
    })
  }

  /** fdatasync, blocking. */
  syncSync(): void {
    this.checkOpen()
    this.fdatasync()
  }

  /** Closes the file (does not sync). Closing twice is harmless. */
  close(): void {
    if (this.fd < 0) return
    const fd = this.fd
    this.fd = -1
    fs.closeSync(fd)
  }

  private fdatasync(): void {
    syncFd(this.fd, this.path)
  }

  private closedError(): BlockrepError {
    return new BlockrepError('ERR_IO', `journal ${this.path} is closed`, { context: { path: this.path } })
  }

  private checkOpen(): void {
    if (this.fd < 0) throw this.closedError()
  }
}
