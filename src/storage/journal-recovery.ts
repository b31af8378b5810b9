import fs from 'node:fs'
import { crc32c } from '../util/crc32c.js'
import { BlockrepError } from '../util/errors.js'
import { HEADER_SIZE, MIN_RING, RING_BASE, SUPER_SLOT_SIZE, decodeHeader, decodeSuper, recordSize, type Checkpoint } from './journal-format.js'
import { initialiseFile, readAt } from './journal-io.js'

/** In-memory index entry of one held record (the ring position makes read(seq) O(1)). */
export interface Entry {
  seq: number
  epoch: number
  offset: number
  length: number
  zero: boolean
  /** ring position and bytes occupied */
  pos: number
  size: number
  dataCrc: number
  hcrc: number
}

type Probe = { entry: Entry } | { entry: null; tornBytes: number }

/**
 * Recovery scan: from the checkpoint, follow records whose header crc, seq,
 * chain and payload crc all verify. Stops at the first that does not; when
 * that one was half-written its size is reported as torn bytes. Never
 * returns a record with a bad crc.
 */
export function scanRing(fd: number, cp: Checkpoint, path: string): { entries: Entry[]; droppedTornBytes: number } {
  const ring = cp.ringSize
  const hdr = Buffer.alloc(HEADER_SIZE)
  let data = Buffer.alloc(0)
  const entries: Entry[] = []

  const probe = (pos: number, seq: number, prev: number): Probe => {
    if (pos + HEADER_SIZE > ring) return { entry: null, tornBytes: 0 }
    readAt(fd, hdr, RING_BASE + pos, path)
    const d = decodeHeader(hdr)
    if (!d.ok) return { entry: null, tornBytes: d.torn ? HEADER_SIZE : 0 }
    const h = d.header
    const size = recordSize(h.length, h.zero)
    // A valid header of some other record (earlier lap, rolled back, reset) is not torn, just not ours.
    if (h.seq !== seq || h.prev !== prev || h.pos !== pos || pos + size > ring) return { entry: null, tornBytes: 0 }
    if (!h.zero) {
      if (data.length < h.length) data = Buffer.alloc(Math.max(h.length, data.length * 2))
      const payload = data.subarray(0, h.length)
      readAt(fd, payload, RING_BASE + pos + HEADER_SIZE, path)
      if (crc32c(payload) !== h.dataCrc) return { entry: null, tornBytes: size }
    }
    const entry: Entry = { seq, epoch: h.epoch, offset: h.offset, length: h.length, zero: h.zero, pos, size, dataCrc: h.dataCrc, hcrc: h.hcrc }
    return { entry }
  }

  let pos = cp.tailPos
  let seq = cp.tailSeq
  let prev = cp.tailPrev
  let used = 0
  let droppedTornBytes = 0
  for (;;) {
    let p = probe(pos, seq, prev)
    // The writer puts a record at 0 exactly when it does not fit at `pos`.
    if (!p.entry && pos !== 0) {
      const atZero = probe(0, seq, prev)
      if (atZero.entry && pos + atZero.entry.size > ring) p = atZero
      else if (!atZero.entry) droppedTornBytes = Math.max(p.tornBytes, atZero.tornBytes)
      else droppedTornBytes = p.tornBytes
    } else if (!p.entry) {
      droppedTornBytes = p.tornBytes
    }
    const e = p.entry
    if (!e) break
    // The lap is measured from the first record, as the writer measures its use: a first record
    // that went to 0 (it did not fit at the checkpoint's position) leaves free space behind it, not used space.
    const gap = e.pos === pos || entries.length === 0 ? 0 : ring - pos
    // Never walk more than one lap, whatever the bytes say.
    if (used + gap + e.size > ring) break
    used += gap + e.size
    entries.push(e)
    pos = e.pos + e.size
    seq++
    prev = e.hcrc
  }
  return { entries, droppedTornBytes }
}

/** The valid superblock slot with the highest generation; ERR_JOURNAL_CORRUPT when neither verifies. */
export function loadCheckpoint(fd: number, file: string): Checkpoint {
  const cps: Checkpoint[] = []
  for (const slot of [0, 1]) {
    const b = Buffer.alloc(64)
    readAt(fd, b, slot * SUPER_SLOT_SIZE, file)
    const cp = decodeSuper(b)
    if (cp) cps.push(cp)
  }
  if (cps.length === 0) throw new BlockrepError('ERR_JOURNAL_CORRUPT', `journal ${file} has no valid superblock`, { context: { path: file } })
  return cps.reduce((a, b) => (b.generation > a.generation ? b : a))
}

/**
 * Opens (with `create`: initialises a missing or empty file), loads the
 * checkpoint and runs the recovery scan. ERR_IO for a missing file,
 * ERR_JOURNAL_CORRUPT when no superblock verifies, ERR_CONFIG when `size`
 * (rounded up to 4 KiB) differs from the file's ring.
 */
export function openJournalFile(file: string, size: number | undefined, create: boolean): { fd: number; cp: Checkpoint; entries: Entry[]; droppedTornBytes: number } {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | (create ? fs.constants.O_CREAT : 0), 0o644)
  } catch (cause) {
    throw new BlockrepError('ERR_IO', `cannot open journal ${file}`, { cause, context: { path: file } })
  }
  try {
    const ringWanted = size === undefined ? undefined : Math.max(MIN_RING, Math.ceil(size / 4096) * 4096)
    if (create && fs.fstatSync(fd).size === 0) {
      if (ringWanted === undefined) throw new BlockrepError('ERR_CONFIG', `creating journal ${file} needs a size`, { context: { path: file } })
      initialiseFile(fd, file, ringWanted)
    }
    const cp = loadCheckpoint(fd, file)
    if (ringWanted !== undefined && ringWanted !== cp.ringSize) {
      throw new BlockrepError('ERR_CONFIG', `journal ${file} has a ${cp.ringSize}-byte ring, not ${ringWanted}`, {
        context: { path: file, expected: ringWanted, actual: cp.ringSize },
      })
    }
    // A file cut short (crash while growing, or an operator) is extended so appends and reads stay in place.
    if (fs.fstatSync(fd).size < RING_BASE + cp.ringSize) fs.ftruncateSync(fd, RING_BASE + cp.ringSize)
    return { fd, cp, ...scanRing(fd, cp, file) }
  } catch (err) {
    fs.closeSync(fd)
    if (err instanceof BlockrepError) throw err
    throw new BlockrepError('ERR_IO', `cannot open journal ${file}`, { cause: err, context: { path: file } })
  }
}
