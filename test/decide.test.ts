import t from 'tap'
import type { BitmapFactory, BlockBitmap, EpochEntry } from '../src/storage/types.js'
import type { WireMeta } from '../src/wire/messages.js'
import { PROTOCOL_VERSION } from '../src/wire/messages.js'
import { bitmaps } from '../src/storage/bitmaps.js'
import { decide, needsDivergenceQuery } from '../src/replication/decide.js'
import type { Decision, PrimaryFacts, StandbyFacts } from '../src/replication/decide.js'

/** The real factory: CRoaring, or native-free under BLOCKREP_NATIVE_FREE=1 (the suite runs both). */
const factory: BitmapFactory = bitmaps()
t.comment(`bitmaps: ${factory.kind}`)
const bm = (xs: number[]): BlockBitmap => factory.create(xs)

const BS = 4096
const BLOCKS = 256
const SIZE = BLOCKS * BS
const ep = (epoch: number, nodeId: string, startSeq: number): EpochEntry => ({ epoch, nodeId, startSeq })
const H1 = [ep(1, 'a', 1)]
/** a wrote 1..60; a failed and b was promoted at 61; the old primary a also kept writing (to 70) before it was fenced */
const H_PRIMARY_AFTER_FAILOVER = [ep(1, 'a', 1), ep(2, 'b', 61)]
const H_OLD_PRIMARY = [ep(1, 'a', 1)]

function primaryFacts(over: Partial<PrimaryFacts> = {}): PrimaryFacts {
  return {
    volumeId: 'vol-1', blockSize: BS, size: SIZE, version: PROTOCOL_VERSION, role: 'primary',
    epochs: H1, headSeq: 100, journalTail: 51,
    peer: { ackedSeq: 80, bitmapValid: true, dirtyBlocks: 0 },
    blocksSinceBranch: null, blocksSinceStandbyHead: null,
    journalBytesSinceStandbyHead: null, journalRecordsSinceStandbyHead: null,
    bitmapSinceStandbyHead: null,
    ...over,
  }
}
function wireMeta(over: Partial<WireMeta> = {}): WireMeta {
  return {
    volumeId: 'vol-1', nodeId: 'b', blockSize: BS, size: SIZE, role: 'standby', epochs: H1,
    headSeq: 100, journalTail: 1, consistent: true, syncedOnce: true, resyncRemaining: null,
    cleanShutdown: true, metaCorrupt: false,
    ...over,
  }
}

interface Row {
  name: string
  /** the rule the row exercises */
  rule: number
  p?: Partial<PrimaryFacts>
  /** arrays become bitmaps */
  sinceBranch?: number[] | null
  sinceHead?: number[] | null
  m?: Partial<WireMeta>
  version?: number
  remaining?: number[] | null
  divergence?: number[] | null
  totalBlocks?: number
  want: {
    mode: Decision['mode']
    blocks?: number
    bytes?: number
    bitmap?: number[] | null
    fromSeq?: number
    toSeq?: number
    divergence?: Decision['divergence']
    reason?: RegExp[]
  }
}

const REMAINING_BUF = { resyncRemaining: Buffer.from('roaring') }
const FULL_FIGURES = { blocks: BLOCKS, bytes: SIZE, bitmap: null }
/** standby = the old primary a: history H1 with head 70, while the primary b branched at 60 */
const DIVERGED = { p: { epochs: H_PRIMARY_AFTER_FAILOVER }, m: { epochs: H_OLD_PRIMARY, headSeq: 70 } }
const DIV_60 = { branchSeq: 60, primaryFromSeq: 61, standbyToSeq: 70 }

const rows: Row[] = [
  // ---- rule 0: refusals, each naming what differs and both values
  { name: 'protocol version differs', rule: 0, version: PROTOCOL_VERSION + 1,
    want: { mode: 'REFUSE', blocks: 0, bytes: 0, reason: [/protocol version differs \(primary 1, standby 2\)/] } },
  { name: 'volumeId differs', rule: 0, m: { volumeId: 'vol-2' },
    want: { mode: 'REFUSE', reason: [/volumeId differs \(primary "vol-1", standby "vol-2"\)/] } },
  { name: 'blockSize differs', rule: 0, m: { blockSize: 512 },
    want: { mode: 'REFUSE', reason: [/blockSize differs \(primary 4096, standby 512\)/] } },
  { name: 'size differs', rule: 0, m: { size: SIZE * 2 },
    want: { mode: 'REFUSE', reason: [/size differs \(primary 1048576, standby 2097152\)/] } },
  { name: 'several differences are all named', rule: 0, m: { volumeId: 'vol-2', size: 4096 },
    want: { mode: 'REFUSE', reason: [/volumeId differs/, /size differs \(primary 1048576, standby 4096\)/] } },
  { name: 'split brain: both primary', rule: 0, m: { role: 'primary', epochs: [ep(1, 'a', 1), ep(2, 'b', 61)], headSeq: 90 },
    want: { mode: 'REFUSE', reason: [/split brain/, /epoch 1 by a from seq 1, head 100/, /peer b's newest epoch 2 by b from seq 61, head 90/] } },
  { name: 'superseded primary: the standby knows a newer epoch', rule: 0,
    m: { epochs: [ep(1, 'a', 1), ep(2, 'c', 61)], headSeq: 80 },
    want: { mode: 'REFUSE', divergence: null, reason: [/superseded/, /standby b knows epoch 2 by c from seq 61/, /newest epoch 1 by a/] } },
  { name: 'superseded primary, even when the standby adopted the epoch without its writes', rule: 0,
    m: { epochs: [ep(1, 'a', 1), ep(2, 'c', 101)], headSeq: 100 },
    want: { mode: 'REFUSE', reason: [/superseded/] } },
  { name: 'an epoch with the same number is a divergence, not a supersession', rule: 2,
    p: { epochs: [ep(1, 'a', 1), ep(2, 'a', 61)] }, m: { epochs: [ep(1, 'a', 1), ep(2, 'c', 61)], headSeq: 70 },
    sinceBranch: [1], divergence: [2], want: { mode: 'BITMAP', bitmap: [1, 2] } },
  { name: 'this side is not primary', rule: 0, p: { role: 'standby' },
    want: { mode: 'REFUSE', reason: [/not primary \(role standby/] } },
  { name: 'order: refusal before corrupt metadata', rule: 0, m: { volumeId: 'other', metaCorrupt: true },
    want: { mode: 'REFUSE' } },
  { name: 'order: refusal before divergence', rule: 0, ...DIVERGED, m: { ...DIVERGED.m, blockSize: 512 },
    want: { mode: 'REFUSE', divergence: null } },

  // ---- rule 1: FULL
  { name: 'metadata failed its checksum', rule: 1, m: { metaCorrupt: true, headSeq: 90 },
    want: { mode: 'FULL', ...FULL_FIGURES, fromSeq: 0, toSeq: 100, reason: [/checksum/] } },
  { name: 'order: corrupt metadata + equal heads is FULL, not NONE', rule: 1, m: { metaCorrupt: true },
    want: { mode: 'FULL', ...FULL_FIGURES } },
  { name: 'order: corrupt metadata + diverged history is FULL, divergence untrusted', rule: 1, ...DIVERGED,
    m: { ...DIVERGED.m, metaCorrupt: true }, sinceBranch: [1], divergence: [2],
    want: { mode: 'FULL', divergence: null } },
  { name: 'never completed a sync', rule: 1, m: { syncedOnce: false, consistent: false, headSeq: 0, epochs: [] },
    want: { mode: 'FULL', ...FULL_FIGURES, reason: [/never completed a sync/, /no resync-remaining bitmap/] } },
  { name: 'never synced though flagged consistent, equal heads: still FULL', rule: 1, m: { syncedOnce: false },
    want: { mode: 'FULL' } },
  { name: 'inconsistent with no resumable bitmap', rule: 1, m: { consistent: false, headSeq: 90 },
    want: { mode: 'FULL', reason: [/inconsistent/, /no resync-remaining bitmap/] } },
  { name: 'inconsistent, remaining bitmap failed to deserialize', rule: 1, m: { consistent: false, ...REMAINING_BUF }, remaining: null,
    want: { mode: 'FULL', reason: [/failed to deserialize/] } },
  { name: 'order: inconsistent without bitmap + journal covering is FULL, not HEAD_DELTA', rule: 1, m: { consistent: false, headSeq: 90 },
    want: { mode: 'FULL' } },
  { name: 'inconsistent without bitmap + diverged: FULL, divergence still reported', rule: 1, ...DIVERGED,
    m: { ...DIVERGED.m, consistent: false },
    want: { mode: 'FULL', divergence: DIV_60, reason: [/divergence/, /seqs 61\.\.70/, /branch seq 60/] } },

  // ---- rule 2: divergence
  { name: 'divergence with both sets known: BITMAP of the union', rule: 2, ...DIVERGED,
    sinceBranch: [1, 2, 3], divergence: [3, 4],
    want: { mode: 'BITMAP', bitmap: [1, 2, 3, 4], blocks: 4, bytes: 4 * BS, fromSeq: 60, toSeq: 100, divergence: DIV_60,
      reason: [/divergence/, /rolls back to seq 60/, /4 blocks/, /3 blocks the primary wrote in seqs 61\.\.100/, /2 blocks the standby wrote/] } },
  { name: 'order: divergence + journal covering the standby head is still rule 2 BITMAP', rule: 2, ...DIVERGED,
    p: { ...DIVERGED.p, journalTail: 1, blocksSinceStandbyHead: 5, journalBytesSinceStandbyHead: 5 * BS },
    sinceBranch: [9], divergence: [],
    want: { mode: 'BITMAP', bitmap: [9], divergence: DIV_60 } },
  { name: 'divergence, primary side unknown: FULL', rule: 2, ...DIVERGED, sinceBranch: null, divergence: [3],
    want: { mode: 'FULL', ...FULL_FIGURES, divergence: DIV_60, reason: [/divergence/, /primary wrote in seqs 61\.\.100/] } },
  { name: 'divergence, standby journal no longer reaches back: FULL', rule: 2, ...DIVERGED, sinceBranch: [1], divergence: null,
    want: { mode: 'FULL', divergence: DIV_60, reason: [/journal no longer reaches back/] } },
  { name: 'divergence, standby not asked: FULL', rule: 2, ...DIVERGED, sinceBranch: [1],
    want: { mode: 'FULL', divergence: DIV_60, reason: [/not asked/] } },
  { name: 'order: diverged with equal heads is not NONE', rule: 2,
    p: { epochs: [ep(1, 'a', 1), ep(2, 'b', 61)] }, m: { epochs: [ep(1, 'a', 1), ep(2, 'c', 61)], headSeq: 100 },
    sinceBranch: [7], divergence: [8],
    want: { mode: 'BITMAP', bitmap: [7, 8], divergence: { branchSeq: 60, primaryFromSeq: 61, standbyToSeq: 100 } } },
  { name: 'standby ahead of the primary on the same history: divergence at the primary head', rule: 2,
    m: { headSeq: 110 }, sinceBranch: null, divergence: [20, 21],
    want: { mode: 'BITMAP', bitmap: [20, 21], fromSeq: 100, divergence: { branchSeq: 100, primaryFromSeq: 101, standbyToSeq: 110 },
      reason: [/ahead of the primary's head 100/, /seqs 101\.\.110/, /the primary wrote nothing after it/] } },
  { name: 'divergence + inconsistent with a resumable bitmap: remaining set merged', rule: 2, ...DIVERGED,
    m: { ...DIVERGED.m, consistent: false, ...REMAINING_BUF }, remaining: [50, 51], sinceBranch: [1], divergence: [2],
    want: { mode: 'BITMAP', bitmap: [1, 2, 50, 51], blocks: 4, reason: [/2 blocks still to resume/] } },

  // ---- rule 3: NONE
  { name: 'equal heads, same history, consistent', rule: 3,
    want: { mode: 'NONE', blocks: 0, bytes: 0, bitmap: null, fromSeq: 100, toSeq: 100, divergence: null, reason: [/seq 100/] } },
  { name: 'equal heads with a later epoch the standby adopted', rule: 3, p: { epochs: [ep(1, 'a', 1), ep(2, 'b', 61)] },
    m: { epochs: [ep(1, 'a', 1), ep(2, 'b', 61)] }, want: { mode: 'NONE' } },
  { name: 'order: inconsistent + resumable + equal heads is BITMAP of the remaining set, not NONE', rule: 5,
    m: { consistent: false, ...REMAINING_BUF }, remaining: [5, 6, 7],
    want: { mode: 'BITMAP', bitmap: [5, 6, 7], blocks: 3, bytes: 3 * BS, fromSeq: 100, toSeq: 100,
      reason: [/resuming/, /3 blocks remaining; nothing was written since/] } },
  { name: 'inconsistent with an empty remaining set at the primary head: an empty BITMAP, not NONE', rule: 5,
    m: { consistent: false, ...REMAINING_BUF }, remaining: [],
    want: { mode: 'BITMAP', bitmap: [], blocks: 0, bytes: 0 } },

  // ---- rule 4: HEAD_DELTA
  { name: 'journal holds every record after the standby head', rule: 4, m: { headSeq: 80 },
    p: { blocksSinceStandbyHead: 12, journalBytesSinceStandbyHead: 20 * BS, journalRecordsSinceStandbyHead: 20 },
    want: { mode: 'HEAD_DELTA', blocks: 12, bytes: 20 * BS, fromSeq: 80, toSeq: 100, bitmap: null,
      reason: [/20 records \(seqs 81\.\.100, ~12 blocks, 81920 bytes\)/, /starts at seq 51/] } },
  { name: 'boundary: journalTail == standbyHead + 1 is HEAD_DELTA', rule: 4, m: { headSeq: 80 }, p: { journalTail: 81 },
    want: { mode: 'HEAD_DELTA', fromSeq: 80, toSeq: 100 } },
  { name: 'boundary: journalTail == standbyHead + 2 is not HEAD_DELTA (no valid bitmap: FULL)', rule: 6, m: { headSeq: 80 },
    p: { journalTail: 82, peer: { ackedSeq: 80, bitmapValid: false, dirtyBlocks: 3 } }, sinceHead: [1, 2],
    want: { mode: 'FULL', reason: [/journal starts at seq 82, after the standby's next seq 81/, /not valid/] } },
  { name: 'boundary: journalTail == standbyHead + 2 with a valid bitmap is BITMAP', rule: 5, m: { headSeq: 80 },
    p: { journalTail: 82 }, sinceHead: [1, 2],
    want: { mode: 'BITMAP', bitmap: [1, 2], fromSeq: 80, toSeq: 100 } },
  { name: 'HEAD_DELTA estimate falls back to the bitmap, then to the record count', rule: 4, m: { headSeq: 90 },
    sinceHead: [1, 2, 3],
    want: { mode: 'HEAD_DELTA', blocks: 3, bytes: 3 * BS } },
  { name: 'HEAD_DELTA estimate with nothing known: one block per record', rule: 4, m: { headSeq: 90 },
    want: { mode: 'HEAD_DELTA', blocks: 10, bytes: 10 * BS } },
  { name: 'standby behind its acked seq, journal covers: HEAD_DELTA, reported', rule: 4, m: { headSeq: 60 },
    p: { peer: { ackedSeq: 80, bitmapValid: true, dirtyBlocks: 0 } },
    want: { mode: 'HEAD_DELTA', fromSeq: 60, reason: [/behind the seq 80 it acknowledged/] } },
  { name: 'never-seen peer, journal covers: HEAD_DELTA', rule: 4, m: { headSeq: 70 }, p: { peer: null },
    want: { mode: 'HEAD_DELTA' } },
  { name: 'journal covers after a failover: standby on the new history', rule: 4,
    p: { epochs: H_PRIMARY_AFTER_FAILOVER, peer: { ackedSeq: 50, bitmapValid: true, dirtyBlocks: 0 } }, m: { epochs: H1, headSeq: 55 },
    want: { mode: 'HEAD_DELTA', fromSeq: 55, divergence: null } },

  // ---- rule 5: BITMAP
  { name: 'journal wrapped, dirty bitmap valid and covering', rule: 5, m: { headSeq: 85 }, p: { journalTail: 91 }, sinceHead: [7, 8, 9],
    want: { mode: 'BITMAP', bitmap: [7, 8, 9], blocks: 3, bytes: 3 * BS, fromSeq: 85, toSeq: 100,
      reason: [/journal starts at seq 91/, /3 blocks written in seqs 86\.\.100/] } },
  { name: 'standby head exactly at the acked seq', rule: 5, m: { headSeq: 80 }, p: { journalTail: 91 }, sinceHead: [1],
    want: { mode: 'BITMAP', bitmap: [1] } },
  { name: 'order: inconsistent + resumable + journal covering is BITMAP (HEAD_DELTA cannot repair the remaining set)', rule: 5,
    m: { consistent: false, headSeq: 90, ...REMAINING_BUF }, remaining: [100, 101], sinceHead: [1, 100],
    want: { mode: 'BITMAP', bitmap: [1, 100, 101], blocks: 3, reason: [/resuming/, /2 blocks remaining/, /2 blocks written in seqs 91\.\.100/] } },
  { name: 'inconsistent + resumable, journal wrapped, bitmap covers', rule: 5,
    m: { consistent: false, headSeq: 85, ...REMAINING_BUF }, p: { journalTail: 95 }, remaining: [3], sinceHead: [4],
    want: { mode: 'BITMAP', bitmap: [3, 4] } },
  { name: 'interrupted first FULL resumes from its remaining set', rule: 5,
    m: { syncedOnce: false, consistent: false, headSeq: 90, ...REMAINING_BUF }, p: { journalTail: 95 },
    remaining: [10, 11, 12], sinceHead: [12, 13],
    want: { mode: 'BITMAP', bitmap: [10, 11, 12, 13] } },
  { name: 'short last block: bytes count only the volume', rule: 5, p: { size: SIZE - 96, journalTail: 95 }, m: { size: SIZE - 96, headSeq: 85 },
    sinceHead: [0, BLOCKS - 1],
    want: { mode: 'BITMAP', blocks: 2, bytes: 2 * BS - 96 } },
  { name: 'blocks past the end of the volume are dropped', rule: 5, m: { headSeq: 85 }, p: { journalTail: 95 },
    sinceHead: [1, BLOCKS, BLOCKS + 5],
    want: { mode: 'BITMAP', bitmap: [1], blocks: 1, bytes: BS } },

  // ---- rule 6: FULL
  { name: 'journal wrapped, peer never seen', rule: 6, m: { headSeq: 85 }, p: { journalTail: 95, peer: null }, sinceHead: [1],
    want: { mode: 'FULL', ...FULL_FIGURES, fromSeq: 0, toSeq: 100, reason: [/no record of this peer/] } },
  { name: 'journal wrapped, bitmap not valid', rule: 6, m: { headSeq: 85 },
    p: { journalTail: 95, peer: { ackedSeq: 80, bitmapValid: false, dirtyBlocks: 0 } }, sinceHead: [1],
    want: { mode: 'FULL', reason: [/not valid/] } },
  { name: 'standby lost acknowledged writes and the journal wrapped: bitmap does not cover', rule: 6, m: { headSeq: 60 },
    p: { journalTail: 95 }, sinceHead: [1, 2],
    want: { mode: 'FULL', reason: [/behind the seq 80 it acknowledged/] } },
  { name: 'bitmap covers but the caller could not assemble the set', rule: 6, m: { headSeq: 85 }, p: { journalTail: 95 }, sinceHead: null,
    want: { mode: 'FULL', reason: [/could not be assembled/] } },
  { name: 'inconsistent + resumable but the blocks since its head are unknown', rule: 6,
    m: { consistent: false, headSeq: 85, ...REMAINING_BUF }, p: { journalTail: 95, peer: null }, remaining: [1],
    want: { mode: 'FULL', reason: [/cannot resume/, /1 block remaining/] } },
  { name: 'totalBlocks option sets the FULL figures', rule: 6, m: { headSeq: 85 }, p: { journalTail: 95, peer: null }, totalBlocks: 300,
    want: { mode: 'FULL', blocks: 300, bytes: SIZE } },
]

function build(row: Row): { p: PrimaryFacts; s: StandbyFacts } {
  const p = primaryFacts(row.p)
  if (row.sinceBranch !== undefined) p.blocksSinceBranch = row.sinceBranch === null ? null : bm(row.sinceBranch)
  if (row.sinceHead !== undefined) p.bitmapSinceStandbyHead = row.sinceHead === null ? null : bm(row.sinceHead)
  const s: StandbyFacts = {
    meta: wireMeta(row.m),
    version: row.version ?? PROTOCOL_VERSION,
    resyncRemaining: row.remaining == null ? null : bm(row.remaining),
  }
  if (row.divergence !== undefined) s.divergence = row.divergence === null ? null : bm(row.divergence)
  return { p, s }
}

t.test('decide - rule table', async t => {
  const covered = new Set<number>()
  for (const row of rows) {
    const { p, s } = build(row)
    const d = decide(p, s, { bitmaps: factory, ...(row.totalBlocks === undefined ? {} : { totalBlocks: row.totalBlocks }) })
    const label = `rule ${row.rule}: ${row.name}`
    t.equal(d.mode, row.want.mode, `${label} → ${row.want.mode}`)
    t.equal(d.rule, row.rule, `${label}: rule (reason: ${d.reason})`)
    covered.add(d.rule)
    const w = row.want
    if (w.blocks !== undefined) t.equal(d.blocks, w.blocks, `${label}: blocks`)
    if (w.bytes !== undefined) t.equal(d.bytes, w.bytes, `${label}: bytes`)
    if (w.bitmap !== undefined) t.same(d.bitmap === null ? null : d.bitmap.toArray(), w.bitmap, `${label}: bitmap`)
    if (w.fromSeq !== undefined) t.equal(d.fromSeq, w.fromSeq, `${label}: fromSeq`)
    if (w.toSeq !== undefined) t.equal(d.toSeq, w.toSeq, `${label}: toSeq`)
    if (w.divergence !== undefined) t.same(d.divergence, w.divergence, `${label}: divergence`)
    for (const re of w.reason ?? []) t.match(d.reason, re, `${label}: reason ${re}`)
    // shape every decision keeps
    t.ok(d.reason.startsWith(`${d.mode} (rule ${d.rule}): `), `${label}: reason names mode and rule`)
    t.notMatch(d.reason, /undefined|NaN|null/, `${label}: reason has no placeholders`)
    if (d.mode === 'BITMAP') {
      t.ok(d.bitmap !== null && d.blocks === d.bitmap.size, `${label}: BITMAP blocks = set size`)
    } else {
      t.equal(d.bitmap, null, `${label}: bitmap only for BITMAP`)
    }
    if (d.mode === 'FULL') t.equal(d.bytes, p.size, `${label}: FULL moves the volume`)
  }
  t.same([...covered].sort(), [0, 1, 2, 3, 4, 5, 6], 'every rule is exercised')
})

t.test('decide - never NONE when the metadata is corrupt or the standby is inconsistent', async t => {
  for (const metaCorrupt of [false, true]) {
    for (const consistent of [false, true]) {
      for (const syncedOnce of [false, true]) {
        for (const remaining of [null, [], [3]]) {
          const { p, s } = build({ name: '', rule: 0, m: { metaCorrupt, consistent, syncedOnce }, remaining, want: { mode: 'NONE' } })
          const d = decide(p, s, { bitmaps: factory })
          const ok = !metaCorrupt && consistent && syncedOnce
          t.equal(d.mode === 'NONE', ok, `corrupt=${metaCorrupt} consistent=${consistent} syncedOnce=${syncedOnce} remaining=${JSON.stringify(remaining)} → ${d.mode}`)
        }
      }
    }
  }
})

function isBitmap(v: unknown): v is BlockBitmap {
  return v !== null && typeof v === 'object' && typeof (v as BlockBitmap).toArray === 'function' && typeof (v as BlockBitmap).orInPlace === 'function'
}

/** Plain-data snapshot of the facts (bitmaps as arrays) to detect mutation. */
function snapshot(v: unknown): unknown {
  if (isBitmap(v)) return { bitmap: v.toArray() }
  if (Buffer.isBuffer(v)) return { buffer: v.toString('hex') }
  if (Array.isArray(v)) return v.map(snapshot)
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, snapshot(x)]))
  return v
}

t.test('decide - deterministic and does not mutate its inputs', async t => {
  for (const row of rows) {
    const { p, s } = build(row)
    const before = snapshot({ p, s })
    const a = decide(p, s, { bitmaps: factory })
    const b = decide(p, s, { bitmaps: factory })
    t.same(snapshot(a), snapshot(b), `${row.name}: same facts, same decision`)
    t.same(snapshot({ p, s }), before, `${row.name}: inputs unchanged`)
    if (a.bitmap !== null) {
      t.not(a.bitmap, b.bitmap, `${row.name}: a fresh bitmap each call`)
      const inputs = [p.blocksSinceBranch, p.bitmapSinceStandbyHead, s.resyncRemaining, s.divergence]
      t.notOk(inputs.includes(a.bitmap), `${row.name}: the result is not an input bitmap`)
      a.bitmap.add(BLOCKS - 1)
      a.bitmap.clear()
      t.same(snapshot({ p, s }), before, `${row.name}: changing the result leaves the inputs alone`)
    }
  }
})

t.test('decide - needsDivergenceQuery', async t => {
  const p = { epochs: H_PRIMARY_AFTER_FAILOVER, headSeq: 100 }
  t.equal(needsDivergenceQuery(p, wireMeta({ epochs: H_OLD_PRIMARY, headSeq: 70 })), 60, 'old primary wrote past the failover')
  t.equal(needsDivergenceQuery(p, wireMeta({ epochs: H_OLD_PRIMARY, headSeq: 60 })), null, 'stopped exactly at the branch')
  t.equal(needsDivergenceQuery(p, wireMeta({ epochs: H_PRIMARY_AFTER_FAILOVER, headSeq: 90 })), null, 'behind on the same history')
  t.equal(needsDivergenceQuery(p, wireMeta({ epochs: H_PRIMARY_AFTER_FAILOVER, headSeq: 105 })), 100, 'ahead of the primary head')
  t.equal(needsDivergenceQuery(p, wireMeta({ epochs: H_OLD_PRIMARY, headSeq: 70, metaCorrupt: true })), null, 'corrupt metadata: history untrusted')
  t.equal(needsDivergenceQuery(p, wireMeta({ epochs: H_OLD_PRIMARY, headSeq: 70, role: 'primary' })), null, 'split brain is refused, not queried')
  t.equal(needsDivergenceQuery({ epochs: H_OLD_PRIMARY, headSeq: 70 }, wireMeta({ epochs: H_PRIMARY_AFTER_FAILOVER, headSeq: 90 })), null,
    'superseded primary is refused, not queried')
  t.equal(needsDivergenceQuery(p, wireMeta({ epochs: H_OLD_PRIMARY, headSeq: 70, consistent: false })), 60,
    'asked even when rule 1 forces FULL, so the overwritten writes can be reported')
  // agrees with decide
  const { p: pf, s } = build({ name: '', rule: 2, ...DIVERGED, sinceBranch: [1], divergence: [2], want: { mode: 'BITMAP' } })
  t.equal(decide(pf, s, { bitmaps: factory }).divergence?.branchSeq, needsDivergenceQuery(pf, s.meta))
})
