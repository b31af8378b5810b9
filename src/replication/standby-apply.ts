import type { WriteMsg } from '../wire/messages.js'
import type { BlockBitmap } from '../storage/types.js'
import type { NodeStore } from './node-store.js'
import { BlockrepError } from '../util/errors.js'
import type { Logger } from '../util/log.js'

/**
 * A record larger than this standby's whole journal (sent by a primary that
 * journaled a big write as one record, before writes were split): applied
 * straight to the data, made durable, and the journal restarted after it, so
 * the head is still right after a crash. The journal no longer holds the
 * records before it (a divergence query then answers "unknown": FULL). The
 * caller restarts its group commit at `m.seq`.
 */
export function applyUnjournaled(store: NodeStore, m: WriteMsg, data: Buffer | null, log: Logger): void {
  log.warn({ seq: m.seq, length: m.length, journalCapacity: store.journal.capacity }, 'record larger than this journal: applied to the data directly, journal restarted after it')
  if (data) store.volume.write(m.offset, data)
  else store.volume.zero(m.offset, m.length)
  store.volume.flushSync()
  store.journal.reset(m.seq + 1)
}

/**
 * A WRITE this standby could not apply (I/O error, disk full): it is no
 * longer a copy of the primary at any head the primary acknowledged to
 * clients, so it stops calling itself consistent. The record's blocks join
 * its resync-remaining set, and the next handshake decides a BITMAP that
 * sends them as blocks instead of replaying the record (docs/modes.md).
 * Returns the error that ends the session, and the remaining set.
 */
export function markCannotApply(store: NodeStore, m: WriteMsg, err: Error, log: Logger): { error: BlockrepError; remaining: BlockBitmap } {
  const bs = store.meta.blockSize
  const remaining = store.meta.resyncRemaining ?? store.bitmaps().create()
  if (m.length > 0) remaining.addRange(Math.floor(m.offset / bs), Math.ceil((m.offset + m.length) / bs))
  store.meta.resyncRemaining = remaining
  store.meta.consistent = false
  try {
    store.saveMeta()
  } catch (saveErr) {
    log.error({ err: (saveErr as Error).message }, 'saving "inconsistent" after a failed apply failed too')
  }
  const code = err instanceof BlockrepError ? err.code : 'ERR_IO'
  const error = new BlockrepError(code, `cannot apply WRITE seq ${m.seq} (${m.length} bytes at ${m.offset}): ${err.message}; marked inconsistent until a resync sends those blocks`, {
    cause: err,
    context: { seq: m.seq, offset: m.offset, length: m.length },
  })
  return { error, remaining }
}
