import t from 'tap'
import fc from 'fast-check'
import { bitmaps } from '../src/storage/bitmaps.js'
import { decide, needsDivergenceQuery } from '../src/replication/decide.js'
import type { Decision, PrimaryFacts, StandbyFacts } from '../src/replication/decide.js'
import { PROTOCOL_VERSION } from '../src/wire/messages.js'
import type { WireMeta } from '../src/wire/messages.js'
import type { BlockBitmap, EpochEntry } from '../src/storage/types.js'
import { property } from './helpers/property.js'

/**
 * `decide` against a reference written from DESIGN.md's rule table, over
 * random histories: nodes write, sync (possibly partially) and get promoted
 * (split brains included), and every seq remembers which epoch wrote which
 * block. The reference finds the branch point from those writes (the longest
 * common prefix of the two logs), not from the epoch tables decide reads, and
 * each decision is also checked for soundness against the simulated content:
 * NONE only when the volumes are equal, HEAD_DELTA only from a prefix of the
 * primary's log, and a BITMAP set that covers every block that differs.
 */
const BS = 4096
const BLOCKS = 48
const factory = bitmaps()

interface Write { label: string; block: number }
interface SimNode { id: string; history: EpochEntry[]; log: Write[] }
const key = (e: EpochEntry): string => `${e.epoch}:${e.nodeId}:${e.startSeq}`
const last = <T>(xs: T[]): T => xs[xs.length - 1]!

function commonPrefix(p: Write[], s: Write[]): number {
  const n = Math.min(p.length, s.length)
  let i = 0
  while (i < n && p[i]!.label === s[i]!.label && p[i]!.block === s[i]!.block) i++
  return i
}

type Step = { op: number; a: number; b: number; k: number }
const step = fc.record({ op: fc.nat(99), a: fc.nat(3), b: fc.nat(3), k: fc.nat(1000) })

/** Plays the steps on nodes a..d (a primary of epoch 1 at the start). */
function simulate(steps: Step[]): SimNode[] {
  const nodes: SimNode[] = ['a', 'b', 'c', 'd'].map((id) => ({ id, history: [{ epoch: 1, nodeId: 'a', startSeq: 1 }], log: [] }))
  let maxEpoch = 1
  for (const { op, a, b, k } of steps) {
    const x = nodes[a]!
    if (op < 45) {
      // a node that authored its newest known epoch writes 1..4 blocks
      if (last(x.history).nodeId !== x.id) continue
      const label = key(last(x.history))
      for (let i = 0; i <= k % 4; i++) x.log.push({ label, block: (k * 7 + i * 13) % BLOCKS })
    } else if (op < 80) {
      // s syncs from x, possibly interrupted: adopts the history, rolls back to the branch, copies part of the rest
      const s = nodes[b]!
      if (s === x || last(x.history).nodeId !== x.id) continue
      s.history = x.history.map((e) => ({ ...e }))
      s.log.length = commonPrefix(x.log, s.log)
      const target = s.log.length + (k % (x.log.length - s.log.length + 1))
      for (let i = s.log.length; i < target; i++) s.log.push(x.log[i]!)
    } else {
      // promotion: usually a new newest number, sometimes a split brain reusing one
      const epoch = k % 5 === 0 ? last(x.history).epoch + 1 : ++maxEpoch
      maxEpoch = Math.max(maxEpoch, epoch)
      x.history = [...x.history, { epoch, nodeId: x.id, startSeq: x.log.length + 1 }]
    }
  }
  return nodes
}

/** Block contents after a log: block -> index of the write that last touched it. */
function content(log: Write[]): Map<number, string> {
  const m = new Map<number, string>()
  log.forEach((w, i) => m.set(w.block, `${w.label}#${i}`))
  return m
}
const blocksOf = (ws: Write[]): BlockBitmap => factory.create(ws.map((w) => w.block))

/** Everything else a handshake might see, drawn at random. */
const extra = fc.record({
  pair: fc.tuple(fc.nat(3), fc.nat(3)),
  newestPrimary: fc.constantFrom(true, true, true, false),
  identity: fc.oneof({ weight: 30, arbitrary: fc.constant('same') }, { weight: 1, arbitrary: fc.constantFrom('version', 'volumeId', 'blockSize', 'size') }),
  primaryRole: fc.oneof({ weight: 20, arbitrary: fc.constant<'primary' | 'standby'>('primary') }, { weight: 1, arbitrary: fc.constant<'primary' | 'standby'>('standby') }),
  standbyRole: fc.oneof({ weight: 20, arbitrary: fc.constant<'primary' | 'standby'>('standby') }, { weight: 1, arbitrary: fc.constant<'primary' | 'standby'>('primary') }),
  consistent: fc.constantFrom(true, true, true, false),
  syncedOnce: fc.constantFrom(true, true, true, false),
  metaCorrupt: fc.constantFrom(false, false, false, false, false, true),
  remaining: fc.option(fc.uniqueArray(fc.nat(BLOCKS - 1), { maxLength: 10 }), { nil: null }),
  tailBack: fc.oneof(fc.nat(3), fc.nat()),
  peer: fc.option(fc.record({ ackedBack: fc.integer({ min: -3, max: 20 }), bitmapValid: fc.boolean() }), { nil: null }),
  mineKnown: fc.boolean(),
  theirs: fc.constantFrom<'known' | 'unknown' | 'not asked'>('known', 'known', 'unknown', 'not asked'),
  sinceKnown: fc.constantFrom(true, true, true, false),
})
type Extra = typeof extra extends fc.Arbitrary<infer T> ? T : never

interface Case {
  p: SimNode
  s: SimNode
  primary: PrimaryFacts
  standby: StandbyFacts
  x: Extra
}

function buildCase(nodes: SimNode[], x: Extra): Case | null {
  let [pi, si] = x.pair
  if (x.newestPrimary) {
    // most handshakes are with the primary of the newest epoch
    const authors = nodes.filter((n) => last(n.history).nodeId === n.id)
    const best = authors.sort((m, n) => newest(n.history) - newest(m.history))[0]
    if (best) pi = nodes.indexOf(best)
  }
  if (pi === si) return null
  const p = nodes[pi]!
  const s = nodes[si]!
  const pHead = p.log.length
  const sHead = s.log.length
  const truth = commonPrefix(p.log, s.log)
  const journalTail = Math.max(1, pHead + 1 - (x.tailBack % (pHead + 2)))
  const ackedSeq = x.peer ? Math.max(0, Math.min(pHead, sHead + x.peer.ackedBack)) : 0
  const primary: PrimaryFacts = {
    volumeId: 'vol', blockSize: BS, size: BLOCKS * BS, version: PROTOCOL_VERSION, role: x.primaryRole,
    epochs: p.history, headSeq: pHead, journalTail,
    peer: x.peer ? { ackedSeq, bitmapValid: x.peer.bitmapValid, dirtyBlocks: 0 } : null,
    blocksSinceBranch: x.mineKnown ? blocksOf(p.log.slice(truth)) : null,
    blocksSinceStandbyHead: null, journalBytesSinceStandbyHead: null, journalRecordsSinceStandbyHead: null,
    bitmapSinceStandbyHead: x.sinceKnown && truth === sHead ? blocksOf(p.log.slice(sHead)) : null,
  }
  const meta: WireMeta = {
    volumeId: x.identity === 'volumeId' ? 'other' : 'vol', nodeId: s.id,
    blockSize: x.identity === 'blockSize' ? 512 : BS, size: x.identity === 'size' ? BLOCKS * BS * 2 : BLOCKS * BS,
    role: x.standbyRole, epochs: s.history, headSeq: sHead, journalTail: 1,
    consistent: x.consistent, syncedOnce: x.syncedOnce,
    resyncRemaining: x.remaining ? factory.create(x.remaining).serialize() : null,
    cleanShutdown: true, metaCorrupt: x.metaCorrupt,
  }
  const asked = needsDivergenceQuery(primary, meta) !== null
  const standby: StandbyFacts = {
    meta, version: x.identity === 'version' ? PROTOCOL_VERSION + 1 : PROTOCOL_VERSION,
    resyncRemaining: x.remaining ? factory.create(x.remaining) : null,
    divergence: !asked || x.theirs === 'not asked' ? undefined : x.theirs === 'unknown' ? null : blocksOf(s.log.slice(truth)),
  }
  return { p, s, primary, standby, x }
}

const newest = (h: EpochEntry[]): number => Math.max(0, ...h.map((e) => e.epoch))

/** The rule table of DESIGN.md (with decide.ts's documented refinements), first match wins. */
function reference(c: Case): { mode: Decision['mode']; rule: number; branch: number | null } {
  const { p, s, primary, standby, x } = c
  const pHead = p.log.length
  const sHead = s.log.length
  const m = standby.meta
  // 0: identity, split brain, a side that is not primary, a superseded primary
  if (standby.version !== primary.version || m.volumeId !== primary.volumeId || m.blockSize !== primary.blockSize || m.size !== primary.size) return { mode: 'REFUSE', rule: 0, branch: null }
  if (primary.role !== 'primary' || m.role === 'primary') return { mode: 'REFUSE', rule: 0, branch: null }
  if (!m.metaCorrupt && newest(s.history) > newest(p.history)) return { mode: 'REFUSE', rule: 0, branch: null }
  // 1: untrustworthy metadata, or inconsistent / never synced without a resumable bitmap
  if (m.metaCorrupt) return { mode: 'FULL', rule: 1, branch: null }
  const truth = commonPrefix(p.log, s.log)
  const branch = truth < sHead ? truth : null
  const inconsistent = !x.consistent || !x.syncedOnce
  if (inconsistent && x.remaining === null) return { mode: 'FULL', rule: 1, branch }
  // 2: the standby wrote after the branch point
  if (branch !== null) {
    const mineKnown = branch >= pHead || x.mineKnown
    const theirsKnown = standby.divergence !== undefined && standby.divergence !== null
    return { mode: mineKnown && theirsKnown ? 'BITMAP' : 'FULL', rule: 2, branch }
  }
  // 3: equal heads on one history, consistent
  if (sHead === pHead && !inconsistent) return { mode: 'NONE', rule: 3, branch: null }
  // 4: the journal holds every record after the standby head (consistent standby)
  const journalCovers = primary.journalTail <= sHead + 1
  if (journalCovers && !inconsistent) return { mode: 'HEAD_DELTA', rule: 4, branch: null }
  // 5: the blocks since the standby head are known: from the journal, or a valid dirty bitmap
  //    that covers them (the standby did not lose writes it had acknowledged); resumes land here
  const lostAcked = primary.peer !== null && sHead < primary.peer.ackedSeq
  const bitmapCovers = primary.peer !== null && primary.peer.bitmapValid && !lostAcked
  if (sHead === pHead || ((journalCovers || bitmapCovers) && primary.bitmapSinceStandbyHead)) return { mode: 'BITMAP', rule: 5, branch: null }
  // 6
  return { mode: 'FULL', rule: 6, branch: null }
}

/** What must hold whatever the rules say, from the simulated contents. */
function soundness(c: Case, d: Decision): string | null {
  const pc = content(c.p.log)
  const sc = content(c.s.log)
  const differing = new Set<number>()
  for (let b = 0; b < BLOCKS; b++) if (pc.get(b) !== sc.get(b)) differing.add(b)
  for (const b of c.x.remaining ?? []) if (!c.x.consistent || !c.x.syncedOnce) differing.add(b)
  switch (d.mode) {
    case 'NONE':
      return differing.size === 0 ? null : `NONE but ${differing.size} blocks differ`
    case 'HEAD_DELTA': {
      const prefix = commonPrefix(c.p.log, c.s.log) === c.s.log.length
      if (!prefix) return 'HEAD_DELTA from a standby log that is not a prefix of the primary log'
      if (d.fromSeq !== c.s.log.length || d.toSeq !== c.p.log.length) return `HEAD_DELTA over (${d.fromSeq}, ${d.toSeq}]`
      if (c.primary.journalTail > d.fromSeq + 1) return 'HEAD_DELTA needs records the journal no longer holds'
      return null
    }
    case 'BITMAP': {
      const missing = [...differing].filter((b) => !d.bitmap!.has(b))
      return missing.length === 0 ? null : `BITMAP misses differing blocks ${missing.join(',')}`
    }
    default:
      return null
  }
}

t.test('decide - agrees with the rule-table reference on random histories, and every decision is sound', async (t) => {
  const seen = new Map<string, number>()
  property(t, 'decide vs reference', fc.property(fc.array(step, { maxLength: 40 }), extra, (steps, x) => {
    const c = buildCase(simulate(steps), x)
    if (c === null) return
    const d = decide(c.primary, c.standby, { bitmaps: factory, totalBlocks: BLOCKS })
    const want = reference(c)
    const where = `primary ${c.p.id} ${JSON.stringify(c.p.history)} head ${c.p.log.length}; standby ${c.s.id} ${JSON.stringify(c.s.history)} head ${c.s.log.length}`
    if (d.mode !== want.mode || d.rule !== want.rule) throw new Error(`decide ${d.mode} rule ${d.rule} (${d.reason}); reference ${want.mode} rule ${want.rule}; ${where}`)
    if (d.mode !== 'REFUSE' && (d.divergence?.branchSeq ?? null) !== want.branch) throw new Error(`branch ${d.divergence?.branchSeq ?? null}, reference ${want.branch}; ${where}`)
    const bad = soundness(c, d)
    if (bad) throw new Error(`${bad}: ${d.reason}; ${where}`)
    const k = `${d.mode}/${d.rule}`
    seen.set(k, (seen.get(k) ?? 0) + 1)
  }), 1500)
  t.comment(`decisions seen: ${[...seen].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`)
  for (const k of ['REFUSE/0', 'FULL/1', 'BITMAP/2', 'FULL/2', 'NONE/3', 'HEAD_DELTA/4', 'BITMAP/5', 'FULL/6']) t.ok((seen.get(k) ?? 0) > 0, `the generator reaches ${k}`)
})
