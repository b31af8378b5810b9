import type { Journal } from './journal.js'
import type { Volume } from './volume.js'

/**
 * Replays records [fromSeq, headSeq] (default: the whole journal) onto the
 * volume in seq order, so writes journaled before a crash reach the data
 * (write-ahead). Idempotent. Does not flush the volume; returns the count.
 */
export function replayJournal(journal: Journal, volume: Volume, fromSeq = journal.tailSeq): number {
  let n = 0
  for (const rec of journal.read(fromSeq, journal.headSeq)) {
    if (rec.data === null) volume.zero(rec.offset, rec.length)
    else volume.write(rec.offset, rec.data)
    n++
  }
  return n
}
