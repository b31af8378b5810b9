import fs from 'node:fs'
import path from 'node:path'
import { randomInt } from 'node:crypto'
import { crc32c } from '../util/crc32c.js'
import { BlockrepError } from '../util/errors.js'
import { HEADER_SIZE, RING_BASE, SUPER_SLOT_SIZE, decodeHeader, encodeSuper, type Checkpoint } from './journal-format.js'
import type { Entry } from './journal-recovery.js'
import type { JournalRecord } from './types.js'

/**
 * Writes `iov` contiguously at `position` with pwritev, finishing a short
 * write buffer by buffer. ENOSPC/EDQUOT become ERR_NO_SPACE, the rest ERR_IO.
 */
export function writeGather(fd: number, iov: Uint8Array[], position: number, path: string): void {
  let total = 0
  for (const b of iov) total += b.length
  let done: number
  try {
    done = fs.writevSync(fd, iov, position)
    if (done < total) {
      let skip = done
      for (const b of iov) {
        if (skip >= b.length) {
          skip -= b.length
          continue
        }
        for (let off = skip; off < b.length; ) off += fs.writeSync(fd, b, off, b.length - off, position + done + off - skip)
        done += b.length - skip
        skip = 0
      }
    }
  } catch (cause) {
    const errno = (cause as NodeJS.ErrnoException).code
    const code = errno === 'ENOSPC' || errno === 'EDQUOT' ? 'ERR_NO_SPACE' : 'ERR_IO'
    throw new BlockrepError(code, `journal ${path}: write of ${total} bytes at ${position} failed: ${errno ?? String(cause)}`, {
      cause,
      context: { path, position, length: total, errno },
    })
  }
}

/** Reads up to buf.length bytes at file position `at`; bytes past EOF read as zero (a truncated file). */
export function readAt(fd: number, buf: Buffer, at: number, path: string): void {
  let done = 0
  try {
    while (done < buf.length) {
      const n = fs.readSync(fd, buf, done, buf.length - done, at + done)
      if (n === 0) break
      done += n
    }
  } catch (cause) {
    throw new BlockrepError('ERR_IO', `read of journal ${path} at ${at + done} failed`, { cause, context: { path, position: at + done } })
  }
  buf.fill(0, done)
}

/** fdatasync, errors as ERR_IO naming the journal. */
export function syncFd(fd: number, path: string): void {
  try {
    fs.fdatasyncSync(fd)
  } catch (cause) {
    const errno = (cause as NodeJS.ErrnoException).code
    throw new BlockrepError('ERR_IO', `journal ${path}: fdatasync failed: ${errno ?? String(cause)}`, { cause, context: { path, errno } })
  }
}

/** A chain value nothing on disk can claim to follow (new journal, reset). */
export function freshChain(): number {
  return randomInt(0x100000000 - 1)
}

/** Writes the checkpoint into slot generation % 2 and makes it durable. */
export function writeSuper(fd: number, cp: Checkpoint, path: string): void {
  const buf = encodeSuper(cp)
  try {
    fs.writeSync(fd, buf, 0, buf.length, (cp.generation % 2) * SUPER_SLOT_SIZE)
  } catch (cause) {
    const errno = (cause as NodeJS.ErrnoException).code
    throw new BlockrepError('ERR_IO', `journal ${path}: superblock write failed: ${errno ?? String(cause)}`, { cause, context: { path, errno } })
  }
  syncFd(fd, path)
}

/** Lays out a new, empty journal file with a `ring`-byte ring, durably (file and directory entry). */
export function initialiseFile(fd: number, file: string, ring: number): void {
  fs.ftruncateSync(fd, RING_BASE + ring)
  writeSuper(fd, { generation: 1, ringSize: ring, tailSeq: 1, tailPos: 0, tailPrev: freshChain(), tailEpoch: 0 }, file)
  const dir = fs.openSync(path.dirname(file), 'r')
  try {
    fs.fsyncSync(dir)
  } finally {
    fs.closeSync(dir)
  }
}

/** Reads one held record and verifies it against its index entry (header crc and payload crc). */
export function readRecord(fd: number, e: Entry, path: string): JournalRecord {
  const hdr = Buffer.allocUnsafe(HEADER_SIZE)
  const data = e.zero ? null : Buffer.allocUnsafe(e.length)
  readAt(fd, hdr, RING_BASE + e.pos, path)
  if (data) readAt(fd, data, RING_BASE + e.pos + HEADER_SIZE, path)
  const d = decodeHeader(hdr)
  if (!d.ok || d.header.hcrc !== e.hcrc || (data !== null && crc32c(data) !== e.dataCrc)) {
    throw new BlockrepError('ERR_JOURNAL_CORRUPT', `journal ${path}: record seq ${e.seq} at ring position ${e.pos} fails its checksum`, {
      context: { path, seq: e.seq, pos: e.pos },
    })
  }
  return { seq: e.seq, epoch: e.epoch, offset: e.offset, length: e.length, data }
}
