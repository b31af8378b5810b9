/**
 * Contracts of the storage layer. Implementations live next to this file
 * (native) and in native-free/ (no addons); both read and write the same
 * on-disk formats.
 */

/** A set of block numbers (u32). Iteration is in ascending order. */
export interface BlockBitmap {
  readonly size: number
  isEmpty(): boolean
  has(block: number): boolean
  add(block: number): void
  /** Adds [start, end) */
  addRange(start: number, end: number): void
  remove(block: number): void
  /** Removes [start, end) */
  removeRange(start: number, end: number): void
  clear(): void
  /** this |= other */
  orInPlace(other: BlockBitmap): void
  clone(): BlockBitmap
  /** Ascending block numbers. */
  [Symbol.iterator](): Iterator<number>
  toArray(): number[]
  /** Portable Roaring serialization format (CRoaring/Java/Go compatible). */
  serialize(): Buffer
  /** Bytes used in memory (approximate but honest). */
  memoryBytes(): number
}

export interface BitmapFactory {
  readonly kind: 'native' | 'native-free'
  create(blocks?: Iterable<number>): BlockBitmap
  /** Throws BlockrepError(ERR_BITMAP_FORMAT) on malformed input. */
  deserialize(buf: Buffer): BlockBitmap
}

/** An exclusive advisory lock on a volume; released on close or process death. */
export interface VolumeLock {
  readonly path: string
  release(): void
}

export interface LockFactory {
  readonly kind: 'native' | 'native-free'
  /** Throws BlockrepError(ERR_LOCK_HELD, context {path, holderPid}) when held elsewhere. */
  acquire(path: string): VolumeLock
}

export interface EpochEntry {
  epoch: number
  nodeId: string
  /** first seq written in this epoch */
  startSeq: number
}

export interface PeerMeta {
  nodeId: string
  /** last seq this peer confirmed durable */
  ackedSeq: number
  /** blocks written since ackedSeq that the journal may no longer hold */
  dirty: BlockBitmap
  bitmapValid: boolean
}

export type Role = 'primary' | 'standby'

export interface NodeMeta {
  volumeId: string
  nodeId: string
  blockSize: number
  size: number
  role: Role
  epochs: EpochEntry[]
  /** newest seq (a cache: recovered from the journal on open) */
  headSeq: number
  /** oldest seq the journal holds */
  journalTail: number
  /** false while a BITMAP or FULL resync is incomplete */
  consistent: boolean
  /** true once any sync (or init as primary) completed */
  syncedOnce: boolean
  /** blocks still to receive in an interrupted resync, or null */
  resyncRemaining: BlockBitmap | null
  cleanShutdown: boolean
  peers: Record<string, PeerMeta>
}

/** One journal record. */
export interface JournalRecord {
  seq: number
  epoch: number
  /** byte offset in the volume */
  offset: number
  length: number
  /** null: the range is zeroed (WRITE_ZEROES/TRIM), nothing stored but the header */
  data: Buffer | null
  /** crc32c of `data` when the caller already has it (computed once for the journal and the wire) */
  crc?: number
}

/** Journal record header without payload (cheap to enumerate). */
export interface JournalEntryInfo {
  seq: number
  epoch: number
  offset: number
  length: number
  zero: boolean
}
