import type { BlockBitmap, PeerMeta } from '../storage/types.js'
import type { NodeStore } from './node-store.js'

/**
 * Blocks the primary wrote after `seq`, when it can know them: from the
 * journal when it still reaches back to seq+1, else from the peer's dirty
 * bitmap (blocks of records that left the journal unacknowledged) plus every
 * record the journal holds — valid only when that bitmap is valid and started
 * at or before `seq`. Null when unknown.
 */
export function blocksSince(store: NodeStore, peer: PeerMeta | null, seq: number): BlockBitmap | null {
  const journal = store.journal
  const head = journal.headSeq
  const bm = store.bitmaps().create()
  if (seq >= head) return bm
  let from: number
  if (journal.tailSeq <= seq + 1) {
    from = seq + 1
  } else if (peer && peer.bitmapValid && peer.ackedSeq <= seq) {
    bm.orInPlace(peer.dirty)
    from = journal.tailSeq
  } else {
    return null
  }
  addEntries(store, bm, from, head)
  return bm
}

/** Adds the blocks of journal records [from, to] to `bm`. */
export function addEntries(store: NodeStore, bm: BlockBitmap, from: number, to: number): void {
  if (from > to) return
  const bs = store.meta.blockSize
  for (const e of store.journal.entries(from, to)) {
    if (e.length === 0) continue
    bm.addRange(Math.floor(e.offset / bs), Math.ceil((e.offset + e.length) / bs))
  }
}

/** Bytes and records of the journal after `seq`, or null when the journal no longer holds them all. */
export function journalGap(store: NodeStore, seq: number): { bytes: number; records: number } | null {
  const journal = store.journal
  const head = journal.headSeq
  if (seq >= head) return { bytes: 0, records: 0 }
  if (journal.tailSeq > seq + 1) return null
  let bytes = 0
  let records = 0
  for (const e of journal.entries(seq + 1, head)) {
    bytes += e.zero ? 0 : e.length
    records++
  }
  return { bytes, records }
}
