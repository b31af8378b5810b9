import t from 'tap'
import type { EpochEntry } from '../src/storage/types.js'
import { branchPoint, divergenceBranch, effectiveHistory, epochOfSeq, isOnHistory, newestEpoch, sameEpoch } from '../src/replication/history.js'

const ep = (epoch: number, nodeId: string, startSeq: number): EpochEntry => ({ epoch, nodeId, startSeq })

t.test('history - epochOfSeq picks the last epoch starting at or before the seq', async t => {
  // epoch 3 wrote nothing: epoch 4 starts at the same seq
  const h = [ep(1, 'a', 1), ep(2, 'b', 101), ep(3, 'c', 151), ep(4, 'a', 151)]
  t.equal(epochOfSeq(h, 0), undefined, 'seq 0 (fresh volume) precedes every epoch')
  t.same(epochOfSeq(h, 1), h[0])
  t.same(epochOfSeq(h, 100), h[0])
  t.same(epochOfSeq(h, 101), h[1])
  t.same(epochOfSeq(h, 150), h[1])
  t.same(epochOfSeq(h, 151), h[3], 'an epoch that wrote nothing owns no seq')
  t.same(epochOfSeq(h, 10_000), h[3])
  t.equal(epochOfSeq([], 5), undefined)
})

t.test('history - effectiveHistory drops epochs a promoted node never reached; newestEpoch', async t => {
  // c adopted a's epoch 5 (from seq 11) in MODE but had only reached seq 3 when it was promoted
  const h = [ep(1, 'a', 1), ep(2, 'b', 1), ep(5, 'a', 11), ep(6, 'c', 4)]
  t.same(effectiveHistory(h), [ep(1, 'a', 1), ep(2, 'b', 1), ep(6, 'c', 4)])
  t.same(epochOfSeq(h, 12), ep(6, 'c', 4), 'seq 12 on c was written by c, not a')
  const mono = [ep(1, 'a', 1), ep(2, 'b', 101)]
  t.equal(effectiveHistory(mono), mono, 'unchanged histories are returned as is')
  t.equal(newestEpoch(h), 6)
  t.equal(newestEpoch([]), 0)
})

t.test('history - isOnHistory checks the seq range, and identity when given an entry', async t => {
  const h = [ep(1, 'a', 1), ep(2, 'b', 101), ep(3, 'a', 201)]
  t.ok(isOnHistory(h, 1, 100))
  t.notOk(isOnHistory(h, 1, 101), 'past the next epoch start in this history')
  t.ok(isOnHistory(h, 2, 150))
  t.ok(isOnHistory(h, 3, 5000), 'last epoch is open-ended')
  t.notOk(isOnHistory(h, 4, 300), 'unknown epoch')
  t.notOk(isOnHistory(h, 2, 50), 'below the epoch start')
  t.ok(isOnHistory(h, ep(2, 'b', 101), 150))
  t.notOk(isOnHistory(h, ep(2, 'c', 101), 150), 'same number, other node: split-brain epoch')
  t.notOk(isOnHistory(h, ep(2, 'b', 99), 150), 'same number and node, other start')
  t.ok(sameEpoch(ep(2, 'b', 101), ep(2, 'b', 101)))
})

t.test('history - branch points across several failovers', async t => {
  // a writes 1..100, fails; b promoted at 101 writes to 200, fails; c promoted
  // at 201; a comes back, is synced, and is promoted again at 301.
  const cluster = [ep(1, 'a', 1), ep(2, 'b', 101), ep(3, 'c', 201), ep(4, 'a', 301)]
  const cases: { name: string; primary: EpochEntry[]; standby: EpochEntry[]; head: number; primaryHead: number; branch: number; diverged: boolean }[] = [
    { name: 'standby on the same history, behind', primary: cluster, standby: cluster, head: 250, primaryHead: 400, branch: 250, diverged: false },
    { name: 'standby with an old history, head before the first failover', primary: cluster, standby: cluster.slice(0, 1), head: 100, primaryHead: 400, branch: 100, diverged: false },
    {
      name: 'old primary a kept writing after b took over (120 > 100)',
      primary: cluster, standby: cluster.slice(0, 1), head: 120, primaryHead: 400, branch: 100, diverged: true,
    },
    {
      name: 'b kept writing after c took over at 201 (b wrote to 230)',
      primary: cluster, standby: cluster.slice(0, 2), head: 230, primaryHead: 400, branch: 200, diverged: true,
    },
    {
      name: 'b missed some of its own epoch before c took over: c at 201 but b head 180',
      primary: cluster, standby: cluster.slice(0, 2), head: 180, primaryHead: 400, branch: 180, diverged: false,
    },
    {
      name: 'split brain: d promoted itself as epoch 3 at 151 while c became epoch 3 at 201',
      primary: cluster, standby: [ep(1, 'a', 1), ep(2, 'b', 101), ep(3, 'd', 151)], head: 170, primaryHead: 400, branch: 150, diverged: true,
    },
    {
      name: 'split brain epoch that wrote nothing: same number, no divergence',
      primary: cluster, standby: [ep(1, 'a', 1), ep(2, 'b', 101), ep(3, 'd', 201)], head: 200, primaryHead: 400, branch: 200, diverged: false,
    },
    {
      name: 'standby ahead of the primary on the primary\'s own last epoch (primary lost records)',
      primary: cluster, standby: cluster, head: 420, primaryHead: 400, branch: 400, diverged: true,
    },
    {
      name: 'standby head at the primary head',
      primary: cluster, standby: cluster, head: 400, primaryHead: 400, branch: 400, diverged: false,
    },
    {
      name: 'fresh standby at seq 0 with no history',
      primary: cluster, standby: [], head: 0, primaryHead: 400, branch: 0, diverged: false,
    },
    {
      name: 'no epoch in common: everything after the empty volume differs',
      primary: cluster, standby: [ep(1, 'z', 1)], head: 50, primaryHead: 400, branch: 0, diverged: true,
    },
    {
      name: 'a later epoch matching after a mismatch is not trusted (errs towards divergence)',
      primary: [ep(1, 'a', 1), ep(2, 'b', 51), ep(3, 'c', 101)],
      standby: [ep(1, 'a', 1), ep(2, 'x', 51), ep(3, 'c', 101)], head: 70, primaryHead: 150, branch: 50, diverged: true,
    },
    {
      name: 'standby knows a newer epoch the primary lacks (primary fenced, not yet aware)',
      primary: cluster.slice(0, 3), standby: cluster, head: 330, primaryHead: 320, branch: 300, diverged: true,
    },
  ]
  for (const c of cases) {
    const onHistory = branchPoint(c.primary, c.standby, c.head)
    const b = divergenceBranch(c.primary, c.primaryHead, c.standby, c.head)
    t.equal(Math.min(onHistory, c.primaryHead), c.branch, `${c.name}: branch`)
    t.equal(b, c.diverged ? c.branch : null, `${c.name}: divergenceBranch`)
  }
})

/** Deterministic PRNG (mulberry32) so a failure reproduces. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

interface SimNode { id: string; history: EpochEntry[]; log: string[] }
const key = (e: EpochEntry): string => `${e.epoch}:${e.nodeId}:${e.startSeq}`

/** Largest s ≤ min(heads) such that both logs hold the same writes in 1..s. */
function truthBranch(p: SimNode, s: SimNode): number {
  const n = Math.min(p.log.length, s.log.length)
  let i = 0
  while (i < n && p.log[i] === s.log[i]) i++
  return i
}

t.test('history - branchPoint matches the ground truth of simulated failovers, split brains and partial syncs', async t => {
  let checked = 0
  let diverged = 0
  for (let seed = 1; seed <= 300; seed++) {
    const r = rng(seed)
    const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!
    const nodes: SimNode[] = ['a', 'b', 'c', 'd'].map(id => ({ id, history: [ep(1, 'a', 1)], log: [] }))
    let maxEpoch = 1
    for (let step = 0; step < 40; step++) {
      const op = r()
      if (op < 0.45) {
        // a node that authored its newest known epoch writes
        const writers = nodes.filter(n => n.history[n.history.length - 1]!.nodeId === n.id)
        if (writers.length === 0) continue
        const w = pick(writers)
        const label = key(w.history[w.history.length - 1]!)
        for (let k = 1 + Math.floor(r() * 5); k > 0; k--) w.log.push(label)
      } else if (op < 0.8) {
        // sync s from p, possibly interrupted: adopt the history, roll back to the true branch, copy part of the rest
        const p = pick(nodes)
        const s = pick(nodes.filter(n => n !== p))
        if (p.history[p.history.length - 1]!.nodeId !== p.id) continue
        s.history = p.history.map(e => ({ ...e }))
        s.log.length = truthBranch(p, s)
        const target = s.log.length + Math.floor(r() * (p.log.length - s.log.length + 1))
        for (let i = s.log.length; i < target; i++) s.log.push(p.log[i]!)
      } else {
        // promotion: usually by the controller (newest number), sometimes a split brain reusing a number
        const x = pick(nodes)
        const epoch = r() < 0.8 ? ++maxEpoch : x.history[x.history.length - 1]!.epoch + 1
        maxEpoch = Math.max(maxEpoch, epoch)
        x.history = [...x.history, ep(epoch, x.id, x.log.length + 1)]
      }
    }
    for (const n of nodes) {
      // the simulation keeps every log consistent with the node's own history
      n.log.forEach((label, i) => {
        const e = epochOfSeq(n.history, i + 1)
        if (e === undefined || key(e) !== label) t.fail(`seed ${seed}: node ${n.id} seq ${i + 1} labelled ${label}, history says ${e && key(e)}`)
      })
    }
    for (const p of nodes) {
      for (const s of nodes) {
        if (p === s) continue
        const truth = truthBranch(p, s)
        const got = divergenceBranch(p.history, p.log.length, s.history, s.log.length)
        const want = truth < s.log.length ? truth : null
        if (got !== want) {
          t.fail(`seed ${seed}: primary ${p.id} ${JSON.stringify(p.history)} head ${p.log.length}, standby ${s.id} ${JSON.stringify(s.history)} head ${s.log.length}: got ${got}, truth ${want}`)
        }
        checked++
        if (want !== null) diverged++
      }
    }
  }
  t.ok(checked > 3000, `${checked} pairs checked`)
  t.ok(diverged > 300, `${diverged} of them diverged`)
})
