/**
 * The handshake decision (DESIGN.md, "The four modes, decided in this order"):
 * a pure function from the facts both sides exchanged to the catch-up mode.
 * It never sees a socket, a file or a clock; the handshake gathers the facts
 * (including the answer to the divergence query, see `needsDivergenceQuery`)
 * and sends the result as MODE. It never mutates its inputs: every bitmap it
 * returns is new.
 *
 * Rules, first match wins:
 *   0 REFUSE      identity differs (protocol version, volumeId, blockSize, size),
 *                 split brain (both primary), this side is not primary, or the
 *                 standby knows a newer epoch than this primary (superseded primary)
 *   1 FULL        standby metadata corrupt; or inconsistent / never synced with
 *                 no resumable remaining bitmap
 *   2 BITMAP|FULL divergence: standby head not on the primary's history (or ahead
 *                 of the primary's head on it); BITMAP of both sides' blocks after
 *                 the branch when both are known, else FULL
 *   3 NONE        equal heads, same history, consistent
 *   4 HEAD_DELTA  consistent, and the journal holds every record after the standby head
 *   5 BITMAP      the blocks written since the standby head are known (journal, or a
 *                 valid dirty bitmap that covers them); also every resumed resync
 *   6 FULL        anything else
 * An inconsistent standby's resync-remaining set is merged into every BITMAP.
 */
import type { BitmapFactory, BlockBitmap, EpochEntry } from '../storage/types.js'
import type { WireMeta } from '../wire/messages.js'
import {
  bitmapReason, differsReason, divergenceBitmapWhy, divergenceUnknownWhy, fullReason, headDeltaReason, inSyncReason,
  knownBlocksWhy, lostAckedNote, META_CORRUPT_WHY, notPrimaryReason, refuseReason, splitBrainReason, supersededReason,
  unknownChangesWhy, unresumableWhy,
} from './decide-reasons.js'
import type { BranchFigures } from './decide-reasons.js'
import { branchPoint, newestEpoch } from './history.js'

export type DecisionMode = 'REFUSE' | 'NONE' | 'HEAD_DELTA' | 'BITMAP' | 'FULL'
export type DecisionRule = 0 | 1 | 2 | 3 | 4 | 5 | 6

/** Rule numbers by name, for callers and logs. */
export const Rule = {
  REFUSE: 0,
  UNUSABLE_STANDBY: 1,
  DIVERGENCE: 2,
  IN_SYNC: 3,
  HEAD_DELTA: 4,
  BITMAP: 5,
  FULL: 6,
} as const satisfies Record<string, DecisionRule>

export interface PrimaryFacts {
  volumeId: string
  blockSize: number
  size: number
  /** protocol version this side speaks */
  version: number
  role: 'primary' | 'standby'
  epochs: EpochEntry[]
  headSeq: number
  /** oldest seq the journal holds (head + 1 when empty) */
  journalTail: number
  /** this peer's record on the primary (null if never seen) */
  peer: { ackedSeq: number; bitmapValid: boolean; dirtyBlocks: number } | null
  /**
   * Blocks the primary wrote after the branch point (rule 2), when known: from
   * the journal if it reaches back, else from the peer's dirty bitmap when it
   * covers the range; null if unknown. Ignored (taken as empty) when the branch
   * is the primary's own head.
   */
  blocksSinceBranch: BlockBitmap | null
  /** distinct blocks written in (standbyHead, primaryHead], for the HEAD_DELTA estimate; null if unknown */
  blocksSinceStandbyHead: number | null
  /** bytes of journal records after the standby's head (HEAD_DELTA estimate); null if unknown */
  journalBytesSinceStandbyHead: number | null
  /** journal records after the standby's head; null if unknown */
  journalRecordsSinceStandbyHead: number | null
  /**
   * The blocks written in (standbyHead, primaryHead]: the journal records'
   * blocks for the part the journal holds, plus the peer's dirty bitmap for the
   * part it no longer holds. null (or absent) when the caller cannot build it.
   * decide uses it for rule 5 only when it can see that it is complete: the
   * journal reaches back to standbyHead + 1, or the peer's bitmap is valid and
   * the standby's head is not behind the peer's acked seq (invariant 1).
   */
  bitmapSinceStandbyHead?: BlockBitmap | null
}

export interface StandbyFacts {
  /** its META message */
  meta: WireMeta
  /** protocol version from its HELLO */
  version: number
  /** meta.resyncRemaining deserialized; null when absent or when it failed to deserialize (not resumable) */
  resyncRemaining: BlockBitmap | null
  /** answer to the divergence query (blocks the standby wrote after the branch); undefined = not asked, null = unknown */
  divergence?: BlockBitmap | null
}

export interface Decision {
  mode: DecisionMode
  rule: DecisionRule
  /** one sentence for `blockrep status` and the log, with the figures */
  reason: string
  /** blocks that will move (HEAD_DELTA: an estimate, the distinct blocks of the records) */
  blocks: number
  /** bytes of data that will move */
  bytes: number
  /**
   * Set whenever the standby's head is not on the primary's history — also
   * when rule 1 forces a FULL, so the handshake can still report the writes
   * that will be overwritten. The standby's writes are (branchSeq, standbyToSeq];
   * the primary's are from primaryFromSeq (= branchSeq + 1) to its head.
   */
  divergence: { branchSeq: number; primaryFromSeq: number; standbyToSeq: number } | null
  /** BITMAP: the set to send (union of the parts that apply, including the standby's resyncRemaining) */
  bitmap: BlockBitmap | null
  /**
   * The seq range (fromSeq, toSeq] the catch-up covers; for HEAD_DELTA exactly
   * the records to replay. FULL: (0, head]; NONE: empty; REFUSE: (0, 0].
   */
  fromSeq: number
  toSeq: number
}

export interface DecideOptions {
  bitmaps: BitmapFactory
  /** blocks in the volume; default ceil(size / blockSize) */
  totalBlocks?: number
}

/**
 * Before decide: whether the caller must ask the standby which blocks it
 * wrote after a branch point (rule 2). Returns the branch seq, or null when
 * the standby's head is on the primary's history at or below the primary's
 * head — or when asking is pointless: the standby's metadata is corrupt (its
 * history cannot be trusted), or rule 0 will refuse because it claims to be
 * primary or knows a newer epoch than this primary.
 */
export function needsDivergenceQuery(primary: Pick<PrimaryFacts, 'epochs' | 'headSeq'>, standby: WireMeta): number | null {
  if (standby.metaCorrupt || standby.role === 'primary') return null
  if (newestEpoch(standby.epochs) > newestEpoch(primary.epochs)) return null
  return branchOf(primary.epochs, primary.headSeq, standby.epochs, standby.headSeq).branch
}

/** The branch seq (null: no divergence) and whether the standby is merely ahead on the primary's own history. */
function branchOf(
  primary: readonly EpochEntry[],
  primaryHead: number,
  standby: readonly EpochEntry[],
  standbyHead: number,
): { branch: number | null; aheadOnHistory: boolean } {
  const onHistory = branchPoint(primary, standby, standbyHead)
  const b = Math.min(onHistory, primaryHead)
  if (b >= standbyHead) return { branch: null, aheadOnHistory: false }
  return { branch: b, aheadOnHistory: onHistory === standbyHead }
}

/** Decides the catch-up mode for one standby. Pure and deterministic. */
export function decide(primary: PrimaryFacts, standby: StandbyFacts, opts: DecideOptions): Decision {
  const m = standby.meta
  const totalBlocks = opts.totalBlocks ?? Math.ceil(primary.size / primary.blockSize)
  const pHead = primary.headSeq
  const sHead = m.headSeq

  // Rule 0 -----------------------------------------------------------------
  const refusals = refusalReasons(primary, standby)
  if (refusals.length > 0) {
    return {
      mode: 'REFUSE', rule: 0, reason: refuseReason(refusals),
      blocks: 0, bytes: 0, divergence: null, bitmap: null, fromSeq: 0, toSeq: 0,
    }
  }

  const full = (rule: 1 | 2 | 6, why: string, divergence: Decision['divergence'] = null): Decision => ({
    mode: 'FULL', rule,
    reason: fullReason(rule, why, totalBlocks, primary.size),
    blocks: totalBlocks, bytes: primary.size, divergence, bitmap: null, fromSeq: 0, toSeq: pHead,
  })
  const bitmapOf = (rule: 2 | 5, parts: BlockBitmap[], fromSeq: number, why: (n: number) => string,
    divergence: Decision['divergence'] = null): Decision => {
    const set = opts.bitmaps.create()
    for (const part of parts) set.orInPlace(part)
    // Blocks past the end of the volume do not exist; never ask the rounds to read them.
    if (totalBlocks < 2 ** 32) set.removeRange(totalBlocks, 2 ** 32)
    const blocks = set.size
    return {
      mode: 'BITMAP', rule, reason: bitmapReason(rule, why(blocks)),
      blocks, bytes: bytesOf(set, primary.size, primary.blockSize, totalBlocks),
      divergence, bitmap: set, fromSeq, toSeq: pHead,
    }
  }

  // Rule 1 -----------------------------------------------------------------
  if (m.metaCorrupt) {
    return full(1, META_CORRUPT_WHY)
  }
  const { branch, aheadOnHistory } = branchOf(primary.epochs, pHead, m.epochs, sHead)
  const divergence = branch === null ? null : { branchSeq: branch, primaryFromSeq: branch + 1, standbyToSeq: sHead }

  // "never completed a sync" counts as inconsistent whatever the flag says.
  const inconsistent = !m.consistent || !m.syncedOnce
  const remaining = inconsistent ? standby.resyncRemaining : null
  if (inconsistent && remaining === null) {
    return full(1, unresumableWhy(m.syncedOnce, m.resyncRemaining !== null,
      branch === null ? null : { branch, sHead, pHead, aheadOnHistory }), divergence)
  }
  const resumeParts = remaining === null ? [] : [remaining]
  const remainingBlocks = remaining === null ? null : remaining.size

  // Rule 2 -----------------------------------------------------------------
  if (branch !== null) {
    const d: BranchFigures = { branch, sHead, pHead, aheadOnHistory }
    // The primary wrote nothing after its own head.
    const mine = branch >= pHead ? opts.bitmaps.create() : primary.blocksSinceBranch
    const theirs = standby.divergence
    if (mine === null || theirs == null) {
      const standbyAnswer = theirs === undefined ? 'not asked' : theirs === null ? 'unknown' : 'known'
      return full(2, divergenceUnknownWhy(d, mine !== null, standbyAnswer), divergence)
    }
    return bitmapOf(2, [mine, theirs, ...resumeParts], branch, n => divergenceBitmapWhy(d, {
      blocks: n, primaryBlocks: mine.size, standbyBlocks: theirs.size, remainingBlocks,
    }), divergence)
  }

  // Rule 3 -----------------------------------------------------------------
  if (sHead === pHead && !inconsistent) {
    return {
      mode: 'NONE', rule: 3,
      reason: inSyncReason(pHead),
      blocks: 0, bytes: 0, divergence: null, bitmap: null, fromSeq: pHead, toSeq: pHead,
    }
  }

  // Rule 4 -----------------------------------------------------------------
  const journalCovers = primary.journalTail <= sHead + 1
  const peer = primary.peer
  const lostAcked = peer !== null && sHead < peer.ackedSeq
  const lostNote = lostAckedNote(lostAcked, sHead, peer?.ackedSeq)
  if (journalCovers && !inconsistent) {
    const records = primary.journalRecordsSinceStandbyHead ?? pHead - sHead
    const blocks = primary.blocksSinceStandbyHead ?? primary.bitmapSinceStandbyHead?.size ?? records
    const bytes = primary.journalBytesSinceStandbyHead ?? blocks * primary.blockSize
    return {
      mode: 'HEAD_DELTA', rule: 4,
      reason: headDeltaReason({ records, blocks, bytes, sHead, pHead, journalTail: primary.journalTail, lostNote }),
      blocks, bytes, divergence: null, bitmap: null, fromSeq: sHead, toSeq: pHead,
    }
  }

  // Rule 5 -----------------------------------------------------------------
  const bitmapCovers = peer !== null && peer.bitmapValid && !lostAcked
  const since = sHead === pHead
    ? opts.bitmaps.create()
    : journalCovers || bitmapCovers ? primary.bitmapSinceStandbyHead ?? null : null
  if (since !== null) {
    // Equal heads reach here only to resume (rule 3 took the consistent case).
    return bitmapOf(5, [since, ...resumeParts], sHead, n => knownBlocksWhy({
      blocks: n, sinceBlocks: since.size, sHead, pHead, journalCovers, journalTail: primary.journalTail,
      remainingBlocks, lostNote,
    }))
  }

  // Rule 6 -----------------------------------------------------------------
  return full(6, unknownChangesWhy({
    sHead, pHead, journalCovers, journalTail: primary.journalTail, peer, lostAcked, remainingBlocks,
  }))
}

/** Rule 0 checks, in the order an operator should fix them. */
function refusalReasons(p: PrimaryFacts, s: StandbyFacts): string[] {
  const m = s.meta
  const out: string[] = []
  const differs = (what: string, mine: string | number, theirs: string | number): void => {
    if (mine !== theirs) out.push(differsReason(what, mine, theirs))
  }
  differs('protocol version', p.version, s.version)
  differs('volumeId', p.volumeId, m.volumeId)
  differs('blockSize', p.blockSize, m.blockSize)
  differs('size', p.size, m.size)
  if (p.role !== 'primary') {
    out.push(notPrimaryReason(p.role, m.role))
  } else if (m.role === 'primary') {
    out.push(splitBrainReason(p.epochs, p.headSeq, m.nodeId, m.epochs, m.headSeq))
  } else if (!m.metaCorrupt && newestEpoch(m.epochs) > newestEpoch(p.epochs)) {
    // Another node was promoted after this one: syncing would drag the standby
    // onto this primary's dead branch and overwrite the new primary's writes.
    out.push(supersededReason(m.nodeId, m.epochs, p.epochs))
  }
  return out
}

/** Bytes in the set's blocks; the last block of a volume whose size is not a multiple of blockSize is short. */
function bytesOf(set: BlockBitmap, size: number, blockSize: number, totalBlocks: number): number {
  let bytes = set.size * blockSize
  if (totalBlocks > 0 && set.has(totalBlocks - 1)) bytes -= totalBlocks * blockSize - size
  return Math.max(0, bytes)
}
