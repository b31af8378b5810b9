/**
 * Epoch-history arithmetic (PostgreSQL-timeline style). A history is a list of
 * `{epoch, nodeId, startSeq}` sorted by epoch; seq continues across epochs, so
 * `startSeq` never decreases along a history. An epoch that accepted no write
 * before the next promotion has the same `startSeq` as its successor.
 *
 * Two entries are the same epoch only when epoch, nodeId and startSeq all
 * match: the same epoch number made by two different promotions (split brain)
 * is two different epochs. Sharing an epoch means sharing the promoted node's
 * content up to `startSeq - 1` (invariant 4), which is what makes the branch
 * point computable from the histories alone.
 *
 * A node may hold entries for epochs whose writes it never received: it
 * adopts the primary's whole history in MODE, and a catch-up can stop short.
 * If such a node is then promoted, its new epoch starts *below* those
 * entries. Every function here therefore works on the effective history
 * (`effectiveHistory`): an entry followed by one with a smaller startSeq owned
 * no seq on this node and is dropped.
 */
import type { EpochEntry } from '../storage/types.js'

/** True when both entries name the same promotion. */
export function sameEpoch(a: EpochEntry, b: EpochEntry): boolean {
  return a.epoch === b.epoch && a.nodeId === b.nodeId && a.startSeq === b.startSeq
}

/**
 * The entries that own seqs on this node: drops every entry that a later
 * entry starts below (the node never reached it before a promotion started a
 * new epoch at a lower seq). Returns the input itself when nothing is dropped.
 */
export function effectiveHistory(history: readonly EpochEntry[]): readonly EpochEntry[] {
  let min = Infinity
  let drop = false
  const keep: boolean[] = new Array<boolean>(history.length)
  for (let i = history.length - 1; i >= 0; i--) {
    const start = history[i]!.startSeq
    keep[i] = start <= min
    if (!keep[i]) drop = true
    min = Math.min(min, start)
  }
  return drop ? history.filter((_, i) => keep[i]) : history
}

/** The highest epoch number in a history (0 when empty). */
export function newestEpoch(history: readonly EpochEntry[]): number {
  let n = 0
  for (const e of history) n = Math.max(n, e.epoch)
  return n
}

function indexOfEpoch(history: readonly EpochEntry[], epoch: number): number {
  for (let i = 0; i < history.length; i++) if (history[i]!.epoch === epoch) return i
  return -1
}

/** First seq that is no longer in epoch `history[i]` (Infinity for the last epoch). */
function endOf(history: readonly EpochEntry[], i: number): number {
  const next = history[i + 1]
  return next === undefined ? Infinity : next.startSeq
}

/**
 * The epoch a seq was written in according to `history`: the last entry whose
 * startSeq ≤ seq (an epoch that wrote nothing is skipped because its successor
 * has the same startSeq). undefined when seq precedes the first epoch (seq 0,
 * the freshly initialized volume).
 */
export function epochOfSeq(history: readonly EpochEntry[], seq: number): EpochEntry | undefined {
  let found: EpochEntry | undefined
  for (const e of effectiveHistory(history)) {
    if (e.startSeq <= seq) found = e
    else break
  }
  return found
}

/**
 * Whether position (epoch, seq) lies on `history`: the history has that epoch,
 * seq ≥ its startSeq - 1, and seq is below the startSeq of the next epoch in
 * *this* history (or it is the last epoch).
 *
 * `epoch` is either an epoch number (only the seq range is checked) or the
 * full entry from the other node's history (then nodeId and startSeq must
 * match too: the same number from a different promotion is not on this
 * history). Pass the entry whenever you have it.
 */
export function isOnHistory(full: readonly EpochEntry[], epoch: number | EpochEntry, seq: number): boolean {
  const history = effectiveHistory(full)
  const num = typeof epoch === 'number' ? epoch : epoch.epoch
  const i = indexOfEpoch(history, num)
  if (i < 0) return false
  const mine = history[i]!
  if (typeof epoch !== 'number' && !sameEpoch(mine, epoch)) return false
  return seq >= mine.startSeq - 1 && seq < endOf(history, i)
}

/**
 * Branch point b: the last seq common to both histories given the standby's
 * head — the largest s ≤ standbyHead that lies in an epoch the two histories
 * share (same epoch, nodeId, startSeq) and is below the next epoch start in
 * *both* histories. Returns standbyHead when the standby's head is on the
 * primary's history, and 0 (the empty volume) when not even the first epoch
 * is shared.
 *
 * Only the common *prefix* of the two histories counts as shared: an epoch
 * that matches after a mismatching one is not trusted (the standby's content
 * before it came from the other branch). Histories are adopted whole in MODE,
 * so in a well-formed cluster this is the same as "any shared epoch"; where
 * it is not, it errs towards reporting a divergence (more blocks move), never
 * towards missing one.
 *
 * It does not know the primary's head: a standby *ahead* of the primary on the
 * primary's own last epoch comes back as standbyHead; callers clamp with the
 * primary's head (see `divergenceBranch`).
 */
export function branchPoint(primaryFull: readonly EpochEntry[], standbyFull: readonly EpochEntry[], standbyHead: number): number {
  const primary = effectiveHistory(primaryFull)
  const standby = effectiveHistory(standbyFull)
  let k = 0
  while (k < primary.length && k < standby.length && sameEpoch(primary[k]!, standby[k]!)) k++
  if (k === 0) return 0
  const last = k - 1
  // Sharing epoch `last` means sharing everything before its start, so the
  // result is at least startSeq - 1 whenever the standby got that far.
  return Math.min(standbyHead, endOf(standby, last) - 1, endOf(primary, last) - 1)
}

/**
 * The branch seq when the standby's head is not on the primary's history —
 * including a standby ahead of the primary's head on the same history (it
 * holds writes the primary lost, so the branch is the primary's head) — or
 * null when the standby's head is on the primary's history at or below the
 * primary's head.
 */
export function divergenceBranch(
  primary: readonly EpochEntry[],
  primaryHead: number,
  standby: readonly EpochEntry[],
  standbyHead: number,
): number | null {
  const b = Math.min(branchPoint(primary, standby, standbyHead), primaryHead)
  return b < standbyHead ? b : null
}
