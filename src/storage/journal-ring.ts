import { BlockrepError } from '../util/errors.js'
import { MAX_RECORD_LENGTH, recordSize } from './journal-format.js'
import type { JournalRecord } from './types.js'

/**
 * Where the next record of `size` bytes goes in a ring of `ring` bytes whose
 * next free position is `nextPos` and whose oldest held record starts at
 * `tailPos` (null: nothing held). -1 when it does not fit without evicting.
 * A record that does not fit before the end of the ring goes to 0; recovery
 * follows the same rule (journal-scan.ts).
 */
export function placeRecord(nextPos: number, size: number, ring: number, tailPos: number | null): number {
  const pos = nextPos + size <= ring ? nextPos : 0
  if (tailPos === null) return pos
  // live region [tailPos, nextPos): free is [nextPos, ring) and [0, tailPos)
  if (nextPos > tailPos) return pos === nextPos || size <= tailPos ? pos : -1
  // live region wraps: [tailPos, ring) and [0, nextPos); free is [nextPos, tailPos). Equal means full.
  return pos === nextPos && pos + size <= tailPos ? pos : -1
}

/** Checks one record before anything is written: seq continuity, field ranges, fits the ring. */
export function validateRecord(rec: JournalRecord, expected: number, ring: number, path: string): void {
  if (rec.seq !== expected) {
    throw new BlockrepError('ERR_JOURNAL_RANGE', `journal ${path}: append of seq ${rec.seq}, expected ${expected}`, {
      context: { path, seq: rec.seq, expected },
    })
  }
  const badData = rec.data !== null && rec.data.length !== rec.length
  if (badData || !Number.isSafeInteger(rec.offset) || rec.offset < 0 || !Number.isInteger(rec.length) || rec.length < 0 ||
    rec.length > MAX_RECORD_LENGTH || !Number.isInteger(rec.epoch) || rec.epoch < 0 || rec.epoch > 0xffffffff) {
    throw new BlockrepError('ERR_JOURNAL_RANGE', `journal ${path}: malformed record seq ${rec.seq}`, {
      context: { path, seq: rec.seq, offset: rec.offset, length: rec.length, dataLength: rec.data?.length ?? null },
    })
  }
  if (recordSize(rec.length, rec.data === null) > ring) {
    throw new BlockrepError('ERR_JOURNAL_FULL', `journal ${path}: record seq ${rec.seq} of ${rec.length} bytes exceeds the ${ring}-byte ring`, {
      context: { path, seq: rec.seq, length: rec.length, capacity: ring },
    })
  }
}
