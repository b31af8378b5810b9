import { crc32c } from '../util/crc32c.js'

/*
 * Journal file layout (all integers little-endian; u64 stored as lo u32, hi u32
 * and limited to 2^53):
 *
 *   [0, 4096)      superblock slot 0   (one 512-byte sector used)
 *   [4096, 8192)   superblock slot 1
 *   [8192, 8192 + ringSize)   the ring of records
 *
 * Superblock slot (64 bytes, the rest of the sector zero):
 *   0  u32 magic 'BRJS'      4  u16 version  6 u16 reserved
 *   8  u64 generation        (slot = generation % 2; the valid slot with the highest wins)
 *   16 u64 ringSize
 *   24 u64 tailSeq           oldest seq held (== next seq when empty)
 *   32 u64 tailPos           ring position of the tail record (or where the next one goes)
 *   40 u32 tailPrev          chain value the tail record must carry
 *   44 u32 tailEpoch         informational
 *   48 u32 recordAlign       512
 *   52 ..60 reserved         60 u32 crc32c of bytes [0, 60)
 *
 * Record at ring position `pos` (aligned to RECORD_ALIGN), padded to RECORD_ALIGN:
 *   0  u32 magic 'BRJR'      4  u16 version  6 u16 flags (1 = ZERO: no payload, reads as zeroes)
 *   8  u64 seq               16 u64 offset (byte offset in the volume)
 *   24 u32 epoch             28 u32 length
 *   32 u32 dataCrc           crc32c of the payload (0 for ZERO)
 *   36 u32 prev              headerCrc of the previous record (the chain)
 *   40 u64 pos               where this record was written
 *   48 u32 salt              random per writer session (open, truncateAfter): see below
 *   52 ..60 reserved         60 u32 headerCrc = crc32c of bytes [0, 60)
 *   64 payload (length bytes), then zero padding
 *
 * The chain (`prev`) is what lets recovery tell a live record from a stale one
 * with the right seq left by an earlier lap, a truncateAfter() or a reset().
 * The salt makes a record appended after a reopen or a truncateAfter() differ
 * from an identical one appended before (same seq, content and place): without
 * it, the stale successor of that older record, written but never synced
 * before a crash or cut by truncateAfter(), would chain onto the new one and
 * come back at the next open.
 * A record that does not fit between `pos` and the end of the ring goes to 0
 * (no marker: recovery tries `pos`, then 0).
 */

export const SUPER_SLOT_SIZE = 4096
export const SUPER_WRITE_SIZE = 512
export const RING_BASE = 2 * SUPER_SLOT_SIZE
export const RECORD_ALIGN = 512
export const HEADER_SIZE = 64
export const MIN_RING = 16 * RECORD_ALIGN
export const FORMAT_VERSION = 1
export const SUPER_MAGIC = 0x534a5242 // 'BRJS'
export const RECORD_MAGIC = 0x524a5242 // 'BRJR'
export const RecordFlag = { ZERO: 1 } as const
/**
 * What writers put in one record at most (Journal.recordLimit): a client write
 * larger than this becomes several records. A quarter of the smallest journal
 * `init` accepts (1 MiB), so a primary's records always fit its standbys'.
 */
export const MAX_RECORD_PAYLOAD = 256 * 1024
/** u32 length field, and a sane cap so a single record cannot be absurd. */
export const MAX_RECORD_LENGTH = 0xffffffff

export interface Checkpoint {
  generation: number
  ringSize: number
  tailSeq: number
  tailPos: number
  tailPrev: number
  tailEpoch: number
}

export interface RecordHeader {
  seq: number
  epoch: number
  offset: number
  length: number
  zero: boolean
  dataCrc: number
  prev: number
  pos: number
  hcrc: number
}

const TWO32 = 0x100000000

function put64(buf: Buffer, at: number, n: number): void {
  buf.writeUInt32LE(n % TWO32, at)
  buf.writeUInt32LE(Math.floor(n / TWO32), at + 4)
}

/** NaN beyond 2^53 so callers reject it. */
function get64(buf: Buffer, at: number): number {
  const hi = buf.readUInt32LE(at + 4)
  if (hi >= 1 << 21) return NaN
  return hi * TWO32 + buf.readUInt32LE(at)
}

/** Bytes a record occupies in the ring: header + payload, rounded up to RECORD_ALIGN. */
export function recordSize(length: number, zero: boolean): number {
  const raw = HEADER_SIZE + (zero ? 0 : length)
  return Math.ceil(raw / RECORD_ALIGN) * RECORD_ALIGN
}

/** Writes the 64-byte header into `buf` at `at`; returns its headerCrc. */
export function encodeHeader(buf: Buffer, at: number, h: Omit<RecordHeader, 'hcrc'>, salt = 0): number {
  buf.fill(0, at, at + HEADER_SIZE)
  buf.writeUInt32LE(RECORD_MAGIC, at)
  buf.writeUInt16LE(FORMAT_VERSION, at + 4)
  buf.writeUInt16LE(h.zero ? RecordFlag.ZERO : 0, at + 6)
  put64(buf, at + 8, h.seq)
  put64(buf, at + 16, h.offset)
  buf.writeUInt32LE(h.epoch, at + 24)
  buf.writeUInt32LE(h.length, at + 28)
  buf.writeUInt32LE(h.dataCrc, at + 32)
  buf.writeUInt32LE(h.prev, at + 36)
  put64(buf, at + 40, h.pos)
  buf.writeUInt32LE(salt >>> 0, at + 48)
  const hcrc = crc32c(buf.subarray(at, at + 60))
  buf.writeUInt32LE(hcrc, at + 60)
  return hcrc
}

export type HeaderCheck = { ok: true; header: RecordHeader } | { ok: false; torn: boolean }

/**
 * Decodes a record header. `torn` tells a header that was being written (magic
 * there, crc wrong) from plain stale or empty space.
 */
export function decodeHeader(buf: Buffer, at = 0): HeaderCheck {
  if (buf.length < at + HEADER_SIZE || buf.readUInt32LE(at) !== RECORD_MAGIC) return { ok: false, torn: false }
  const hcrc = buf.readUInt32LE(at + 60)
  if (crc32c(buf.subarray(at, at + 60)) !== hcrc || buf.readUInt16LE(at + 4) !== FORMAT_VERSION) return { ok: false, torn: true }
  const header: RecordHeader = {
    seq: get64(buf, at + 8),
    offset: get64(buf, at + 16),
    epoch: buf.readUInt32LE(at + 24),
    length: buf.readUInt32LE(at + 28),
    zero: (buf.readUInt16LE(at + 6) & RecordFlag.ZERO) !== 0,
    dataCrc: buf.readUInt32LE(at + 32),
    prev: buf.readUInt32LE(at + 36),
    pos: get64(buf, at + 40),
    hcrc,
  }
  if (Number.isNaN(header.seq) || Number.isNaN(header.offset) || Number.isNaN(header.pos)) return { ok: false, torn: true }
  return { ok: true, header }
}

/** One sector holding the checkpoint. */
export function encodeSuper(cp: Checkpoint): Buffer {
  const buf = Buffer.alloc(SUPER_WRITE_SIZE)
  buf.writeUInt32LE(SUPER_MAGIC, 0)
  buf.writeUInt16LE(FORMAT_VERSION, 4)
  put64(buf, 8, cp.generation)
  put64(buf, 16, cp.ringSize)
  put64(buf, 24, cp.tailSeq)
  put64(buf, 32, cp.tailPos)
  buf.writeUInt32LE(cp.tailPrev, 40)
  buf.writeUInt32LE(cp.tailEpoch, 44)
  buf.writeUInt32LE(RECORD_ALIGN, 48)
  buf.writeUInt32LE(crc32c(buf.subarray(0, 60)), 60)
  return buf
}

/** null unless magic, version, crc and field ranges all check out. */
export function decodeSuper(buf: Buffer): Checkpoint | null {
  if (buf.length < 64 || buf.readUInt32LE(0) !== SUPER_MAGIC || buf.readUInt16LE(4) !== FORMAT_VERSION) return null
  if (crc32c(buf.subarray(0, 60)) !== buf.readUInt32LE(60) || buf.readUInt32LE(48) !== RECORD_ALIGN) return null
  const cp: Checkpoint = {
    generation: get64(buf, 8),
    ringSize: get64(buf, 16),
    tailSeq: get64(buf, 24),
    tailPos: get64(buf, 32),
    tailPrev: buf.readUInt32LE(40),
    tailEpoch: buf.readUInt32LE(44),
  }
  const sane =
    Number.isSafeInteger(cp.generation) && cp.ringSize >= MIN_RING && cp.ringSize % RECORD_ALIGN === 0 &&
    cp.tailSeq >= 1 && cp.tailPos >= 0 && cp.tailPos <= cp.ringSize && cp.tailPos % RECORD_ALIGN === 0
  return sane ? cp : null
}
