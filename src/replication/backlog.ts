import { closeSync, copyFileSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync, readdirSync, unlinkSync, writeSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { BlockrepError } from '../util/errors.js'
import type { DivergenceReport } from './divergence-report.js'

/**
 * A node's backlog: the writes it accepted after the branch point that a
 * rejoin rolled back (DESIGN "Rejoin and backlog handover"). With
 * `divergencePolicy: keep` each rejoin leaves a pair next to the data file,
 * written by divergence-report.ts:
 *
 *   <data>.diverged-<from>-<to>.json   the report (seq range, blocks, time)
 *   <data>.diverged-<from>-<to>.bin    the records, in seq order, each
 *                                      u32 BE headerLength | header (JSON + "\n") | data (header.length bytes, none when zero)
 */
export interface BacklogEntry {
  /** "<from>-<to>" */
  id: string
  json: string
  /** null when only the report is there (no records were kept) */
  bin: string | null
  report: Partial<DivergenceReport> & { fromSeq: number; toSeq: number }
}

export interface BacklogRecord {
  seq: number
  epoch: number
  offset: number
  length: number
  /** null: the range reads back as zeroes */
  data: Buffer | null
}

const NAME_RE = /\.diverged-(\d+)-(\d+)\.json$/

/** Every backlog kept next to `dataPath`, oldest seq range first. */
export function listBacklog(dataPath: string): BacklogEntry[] {
  const dir = dirname(dataPath)
  const base = basename(dataPath)
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch (err) {
    throw new BlockrepError('ERR_IO', `cannot list ${dir}: ${(err as Error).message}`, { cause: err, context: { path: dir } })
  }
  const out: BacklogEntry[] = []
  for (const name of names) {
    const m = NAME_RE.exec(name)
    if (m === null || name !== base + m[0]) continue
    const json = join(dir, name)
    const bin = json.replace(/\.json$/, '.bin')
    out.push({ id: `${m[1]}-${m[2]}`, json, bin: existsSync(bin) ? bin : null, report: readReport(json) })
  }
  return out.sort((a, b) => a.report.fromSeq - b.report.fromSeq)
}

/** The entry named `id` ("<from>-<to>"), or a usage error listing the ones there are. */
export function findBacklog(dataPath: string, id: string): BacklogEntry {
  const all = listBacklog(dataPath)
  const e = all.find((x) => x.id === id)
  if (!e) {
    const have = all.length ? all.map((x) => x.id).join(', ') : 'none'
    throw new BlockrepError('ERR_USAGE', `no backlog ${id} next to ${dataPath} (there are: ${have})`, { context: { id } })
  }
  return e
}

function readReport(path: string): BacklogEntry['report'] {
  let v: unknown
  try {
    v = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new BlockrepError('ERR_JOURNAL_CORRUPT', `backlog report ${path} cannot be read: ${(err as Error).message}`, { cause: err, context: { path } })
  }
  const r = v as Record<string, unknown>
  if (typeof r !== 'object' || r === null || typeof r.fromSeq !== 'number' || typeof r.toSeq !== 'number') {
    throw new BlockrepError('ERR_JOURNAL_CORRUPT', `backlog report ${path} has no seq range`, { context: { path } })
  }
  return r as BacklogEntry['report']
}

/** The kept records of an entry, in seq order; a truncated or malformed file is an error naming the byte offset. */
export function readBacklogRecords(e: BacklogEntry): BacklogRecord[] {
  if (e.bin === null) return []
  const buf = readFileSync(e.bin)
  const out: BacklogRecord[] = []
  let at = 0
  const bad = (why: string): never => {
    throw new BlockrepError('ERR_JOURNAL_CORRUPT', `${e.bin} at byte ${at}: ${why}`, { context: { path: e.bin, offset: at } })
  }
  while (at < buf.length) {
    if (at + 4 > buf.length) bad('truncated header length')
    const hl = buf.readUInt32BE(at)
    if (hl === 0 || at + 4 + hl > buf.length) bad(`header of ${hl} bytes runs past the end`)
    let h: Record<string, unknown>
    try {
      h = JSON.parse(buf.subarray(at + 4, at + 4 + hl).toString('utf8')) as Record<string, unknown>
    } catch {
      return bad('header is not JSON')
    }
    const { seq, epoch, offset, length, zero } = h
    if (![seq, epoch, offset, length].every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) || typeof zero !== 'boolean') bad('header lacks seq/epoch/offset/length/zero')
    const dataAt = at + 4 + hl
    const len = length as number
    if (!zero && dataAt + len > buf.length) bad(`record seq ${String(seq)} has ${len} data bytes, the file ends before`)
    out.push({ seq: seq as number, epoch: epoch as number, offset: offset as number, length: len, data: zero ? null : buf.subarray(dataAt, dataAt + len) })
    at = dataAt + (zero ? 0 : len)
  }
  return out
}

/**
 * Writes the records as a raw image delta: a sparse file of the volume's size
 * holding each record at its offset, applied in seq order (later wins). Only
 * the backlog's block ranges carry data; the rest are holes.
 */
export function exportRaw(e: BacklogEntry, out: string, overwrite: boolean): { records: number; bytes: number } {
  const size = e.report.volumeSize
  if (typeof size !== 'number') throw new BlockrepError('ERR_USAGE', `${e.json} predates volume sizes in reports: export with --format records`)
  if (!overwrite && existsSync(out)) throw new BlockrepError('ERR_USAGE', `${out} exists (add --force to overwrite)`, { context: { path: out } })
  const records = readBacklogRecords(e)
  const fd = openSync(out, 'w', 0o600)
  let bytes = 0
  try {
    ftruncateSync(fd, size)
    for (const r of records) {
      const data = r.data ?? Buffer.alloc(r.length)
      writeSync(fd, data, 0, data.length, r.offset)
      bytes += r.length
    }
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  return { records: records.length, bytes }
}

/** Copies the report and the records to `<out>.json` and `<out>.bin`. */
export function exportRecords(e: BacklogEntry, out: string, overwrite: boolean): string[] {
  const targets = [`${out}.json`, ...(e.bin ? [`${out}.bin`] : [])]
  for (const p of targets) if (!overwrite && existsSync(p)) throw new BlockrepError('ERR_USAGE', `${p} exists (add --force to overwrite)`, { context: { path: p } })
  readBacklogRecords(e) // a damaged file is refused, not copied on
  copyFileSync(e.json, targets[0]!)
  if (e.bin) copyFileSync(e.bin, targets[1]!)
  return targets
}

/** Deletes an entry's files. */
export function discardBacklog(e: BacklogEntry): string[] {
  const gone = [e.json, ...(e.bin ? [e.bin] : [])]
  for (const p of gone) unlinkSync(p)
  return gone
}
