/**
 * The operator-facing wording of `Decision.reason` (`blockrep status`, the
 * log): one sentence per rule, with the figures. `decide` chooses the rule and
 * the figures; this module only phrases them. The sentences are asserted in
 * the tests, so change them on purpose.
 */
import type { EpochEntry } from '../storage/types.js'

/** Where the standby's head left the primary's history (rules 1 and 2). */
export interface BranchFigures {
  branch: number
  sHead: number
  pHead: number
  /** the standby's head is on the primary's history, past the primary's head */
  aheadOnHistory: boolean
}

export function refuseReason(refusals: readonly string[]): string {
  return `REFUSE (rule 0): ${refusals.join('; ')}`
}

export function fullReason(rule: number, why: string, totalBlocks: number, size: number): string {
  return `FULL (rule ${rule}): ${why}; sending every block (${totalBlocks} blocks, ${size} bytes)`
}

export function bitmapReason(rule: number, why: string): string {
  return `BITMAP (rule ${rule}): ${why}`
}

// Rule 0

export function differsReason(what: string, mine: string | number, theirs: string | number): string {
  return `${what} differs (primary ${fmt(mine)}, standby ${fmt(theirs)})`
}

export function notPrimaryReason(role: string, peerRole: string): string {
  return `this node is not primary (role ${role}, peer ${peerRole}); only the primary decides`
}

export function splitBrainReason(
  epochs: readonly EpochEntry[], headSeq: number, peerId: string, peerEpochs: readonly EpochEntry[], peerHeadSeq: number,
): string {
  return `split brain: both nodes are primary (this node's newest epoch ${fmtEpoch(epochs)}, head ${headSeq};` +
    ` the peer ${peerId}'s newest epoch ${fmtEpoch(peerEpochs)}, head ${peerHeadSeq}); demote one of them`
}

export function supersededReason(peerId: string, peerEpochs: readonly EpochEntry[], epochs: readonly EpochEntry[]): string {
  return `this primary was superseded: the standby ${peerId} knows epoch ${fmtEpoch(peerEpochs)},` +
    ` newer than this node's newest epoch ${fmtEpoch(epochs)}; demote this node`
}

// Rule 1

export const META_CORRUPT_WHY =
  "the standby's metadata failed its checksum, so its head and history cannot be trusted (writes it may hold beyond the primary's history cannot be identified)"

function divergedHow({ branch, sHead, pHead, aheadOnHistory }: BranchFigures): string {
  return aheadOnHistory
    ? `the standby's head ${sHead} is ahead of the primary's head ${pHead} on the same history: it holds ${seqs(branch + 1, sHead)} that the primary lost`
    : `the standby's ${seqs(branch + 1, sHead)} are not on the primary's history (branch seq ${branch})`
}

/** An inconsistent standby with nothing to resume from; `diverged` is null without divergence. */
export function unresumableWhy(syncedOnce: boolean, hadRemainingBitmap: boolean, diverged: BranchFigures | null): string {
  const what = !syncedOnce ? 'the standby never completed a sync' : 'the standby is inconsistent (an interrupted resync)'
  const why = hadRemainingBitmap
    ? 'its resync-remaining bitmap failed to deserialize'
    : 'it has no resync-remaining bitmap to resume from'
  const also = diverged === null ? '' : `; divergence: ${divergedHow(diverged)}, and they will be overwritten`
  return `${what} and ${why}${also}`
}

/** Appended to a BITMAP reason when an interrupted resync is merged in ('' when there is none). */
function resumeNote(remainingBlocks: number | null): string {
  return remainingBlocks === null ? '' : ` ∪ ${count(remainingBlocks, 'block')} still to resume from the interrupted resync`
}

// Rule 2

/**
 * `primaryKnown`: whether the primary's blocks since the branch are known;
 * `standbyAnswer`: the divergence query was not asked, answered "unknown", or answered.
 */
export function divergenceUnknownWhy(d: BranchFigures, primaryKnown: boolean, standbyAnswer: 'not asked' | 'unknown' | 'known'): string {
  const unknown = [
    primaryKnown ? '' : `which blocks the primary wrote in ${seqs(d.branch + 1, d.pHead)}`,
    standbyAnswer === 'not asked' ? 'which blocks the standby wrote after the branch (it was not asked)'
      : standbyAnswer === 'unknown' ? "which blocks the standby wrote after the branch (its journal no longer reaches back)" : '',
  ].filter(s => s !== '').join(' and ')
  return `divergence: ${divergedHow(d)}, and it is unknown ${unknown}`
}

export function divergenceBitmapWhy(d: BranchFigures, o: {
  blocks: number
  primaryBlocks: number
  standbyBlocks: number
  /** blocks left of an interrupted resync merged in; null when none */
  remainingBlocks: number | null
}): string {
  const primaryPart = d.branch >= d.pHead ? 'the primary wrote nothing after it'
    : `${count(o.primaryBlocks, 'block')} the primary wrote in ${seqs(d.branch + 1, d.pHead)}`
  return `divergence: ${divergedHow(d)}; the standby rolls back to seq ${d.branch} and receives ${count(o.blocks, 'block')}` +
    ` (${primaryPart}` +
    ` ∪ ${count(o.standbyBlocks, 'block')} the standby wrote after the branch${resumeNote(o.remainingBlocks)})`
}

// Rule 3

export function inSyncReason(pHead: number): string {
  return `NONE (rule 3): both heads are at seq ${pHead} on the same history and the standby is consistent`
}

// Rule 4

/** Appended when the standby's head is behind what it acknowledged ('' when it is not). */
export function lostAckedNote(lostAcked: boolean, sHead: number, ackedSeq: number | undefined): string {
  return lostAcked
    ? ` (the standby's head ${sHead} is behind the seq ${ackedSeq} it acknowledged, or that this node assumed for it when promoted: it lost acknowledged writes, or missed the old primary's last ones)`
    : ''
}

export function headDeltaReason(o: {
  records: number
  blocks: number
  bytes: number
  sHead: number
  pHead: number
  journalTail: number
  lostNote: string
}): string {
  return `HEAD_DELTA (rule 4): replaying ${count(o.records, 'record')} (${seqs(o.sHead + 1, o.pHead)},` +
    ` ~${count(o.blocks, 'block')}, ${o.bytes} bytes) from the primary's journal, which starts at seq ${o.journalTail}${o.lostNote}`
}

// Rule 5

export function knownBlocksWhy(o: {
  blocks: number
  sinceBlocks: number
  sHead: number
  pHead: number
  journalCovers: boolean
  journalTail: number
  /** blocks left of an interrupted resync being resumed; null when not resuming */
  remainingBlocks: number | null
  lostNote: string
}): string {
  const { sHead, pHead } = o
  const written = `${count(o.sinceBlocks, 'block')} written in ${seqs(sHead + 1, pHead)}`
  const source = o.journalCovers ? `the journal holds ${seqs(sHead + 1, pHead)}`
    : `the journal starts at seq ${o.journalTail} and the dirty bitmap covers the rest of ${seqs(sHead + 1, pHead)}`
  return o.remainingBlocks !== null
    ? `resuming an interrupted resync at standby head ${sHead}: sending ${count(o.blocks, 'block')}` +
      ` (${count(o.remainingBlocks, 'block')} remaining` +
      `${sHead === pHead ? '; nothing was written since' : ` ∪ ${written}; ${source}`})${o.lostNote}`
    : `${source}: sending ${count(o.blocks, 'block')} (${written})`
}

// Rule 6

export function unknownChangesWhy(o: {
  sHead: number
  pHead: number
  journalCovers: boolean
  journalTail: number
  peer: { ackedSeq: number; bitmapValid: boolean } | null
  lostAcked: boolean
  remainingBlocks: number | null
}): string {
  const { sHead, pHead, peer } = o
  const journalWhy = `the journal starts at seq ${o.journalTail}, after the standby's next seq ${sHead + 1},`
  const bitmapWhy = peer === null ? 'the primary has no record of this peer (no dirty bitmap)'
    : !peer.bitmapValid ? "the primary's dirty bitmap for this peer is not valid"
      : o.lostAcked ? `the standby's head ${sHead} is behind the seq ${peer.ackedSeq} it acknowledged, or that this node assumed for it when promoted (it lost acknowledged writes, or missed the old primary's last ones), which the dirty bitmap does not cover`
        : `the blocks written in ${seqs(sHead + 1, pHead)} could not be assembled`
  const what = o.remainingBlocks !== null
    ? `cannot resume the interrupted resync (${count(o.remainingBlocks, 'block')} remaining): the blocks written since its head ${sHead} are unknown`
    : `cannot tell which blocks changed in ${seqs(sHead + 1, pHead)}`
  return o.journalCovers ? `${what}: ${bitmapWhy}` : `${what}: ${journalWhy} and ${bitmapWhy}`
}

function fmt(v: string | number): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v)
}

function fmtEpoch(epochs: readonly EpochEntry[]): string {
  const e = epochs[epochs.length - 1]
  return e === undefined ? '(none)' : `${e.epoch} by ${e.nodeId} from seq ${e.startSeq}`
}

function seqs(from: number, to: number): string {
  if (from > to) return 'no seqs'
  return from === to ? `seq ${from}` : `seqs ${from}..${to}`
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}
