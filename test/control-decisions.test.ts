import t from 'tap'
import { nodeAvailable, primaryVerdict, siteHealth } from '../src/control/health.js'
import { fenceVerdict } from '../src/control/fencing.js'
import { chooseStandby } from '../src/control/failover-choice.js'
import type { Candidate, ChoiceInput } from '../src/control/failover-choice.js'
import { AlarmBook } from '../src/control/alarms.js'
import type { AlarmCondition } from '../src/control/alarms.js'
import { buildDoc, sameDoc } from '../src/control/volume-doc.js'

t.test('health - a node is available while its last answer is at most timeoutMs old (fake clock)', async (t) => {
  const rows: [number | null, number, number, boolean, string][] = [
    [1000, 0, 1500, true, 'answered 500 ms ago'],
    [1000, 0, 2000, true, 'exactly timeoutMs ago'],
    [1000, 0, 2001, false, 'past the timeout'],
    [null, 0, 900, true, 'never answered, controller just started (grace from its start)'],
    [null, 0, 1001, false, 'never answered and the start is past the timeout'],
  ]
  for (const [last, since, now, want, why] of rows) t.equal(nodeAvailable(last, since, now, 1000), want, why)
})

t.test('health - a site is available while at least siteThreshold of its nodes answer (and one does)', async (t) => {
  const site = (up: number, total: number, threshold: number) =>
    siteHealth(Array.from({ length: total }, (_, i) => ({ site: 'west', available: i < up })), threshold).get('west')!
  const rows: [number, number, number, boolean][] = [
    [3, 3, 0.5, true], [2, 3, 0.5, true], [1, 3, 0.5, false], [0, 3, 0.5, false],
    [2, 2, 0.5, true], [1, 2, 0.5, true], [0, 2, 0.5, false], [1, 2, 0.6, false],
    [1, 2, 0.4, true], [1, 1, 0.5, true], [0, 1, 0.01, false], [1, 4, 0.25, true], [1, 4, 0.3, false], [2, 4, 0.5, true],
  ]
  for (const [up, total, th, want] of rows) {
    const s = site(up, total, th)
    t.equal(s.available, want, `${up}/${total} at ${th}: ${want ? 'available' : 'unavailable'}`)
    t.equal(s.ratio, up / total)
  }
  const mixed = siteHealth([{ site: 'east', available: true }, { site: 'west', available: false }, { site: 'west', available: true }, { site: 'west', available: true }], 0.5)
  t.same([...mixed.keys()].sort(), ['east', 'west'])
  t.equal(mixed.get('west')!.up, 2)
})

t.test('health - the primary failed when it is past the timeout or its site is unavailable', async (t) => {
  const up = { site: 'east', total: 2, up: 2, ratio: 1, threshold: 0.5, available: true }
  const down = { ...up, up: 0, ratio: 0, available: false }
  t.same(primaryVerdict('a', true, up).failed, false)
  t.match(primaryVerdict('a', false, up), { failed: true, reason: /has not answered/ })
  t.match(primaryVerdict('a', true, down), { failed: true, reason: /site east .* unavailable \(0\/2/ })
})

t.test('fencing - may promote only when now ≥ lastGrantSentAt + leaseMs and ≥ takeoverAt + leaseMs', async (t) => {
  const rows: [number, number | null, number, boolean, number, string][] = [
    [10_000, 9_000, 0, false, 1000, 'grant sent 1 s ago, lease 2 s: wait 1 s'],
    [11_000, 9_000, 0, true, 0, 'exactly at sentAt + leaseMs'],
    [11_001, 9_000, 0, true, 0, 'after'],
    [1_000, null, 0, false, 1000, 'no grant ever, just took over: wait out a predecessor lease'],
    [2_000, null, 0, true, 0, 'no grant, takeover long enough ago'],
    [12_000, 11_500, 11_000, false, 1500, 'the later of the two counts'],
    [12_000, 5_000, 11_000, false, 1000, 'takeover later than the last grant'],
  ]
  for (const [now, grant, takeover, ok, wait, why] of rows) {
    const v = fenceVerdict({ now, lastGrantSentAt: grant, takeoverAt: takeover, leaseMs: 2000 })
    t.equal(v.mayPromote, ok, `${why}: mayPromote ${ok}`)
    t.equal(v.waitMs, wait, `${why}: wait ${wait}`)
    if (!ok) t.equal(v.until, now + wait, `${why}: allowed from ${now + wait}`)
    else t.ok(v.until <= now, `${why}: allowed since ${v.until}`)
  }
})

const cand = (node: string, over: Partial<Candidate> = {}): Candidate => ({
  node, site: 'west', available: true, siteAvailable: true, role: 'standby', epoch: 1, headSeq: 100, consistent: true, noFailover: false, ...over,
})
const input = (candidates: Candidate[], over: Partial<ChoiceInput> = {}): ChoiceInput => ({
  failed: { node: 'a', site: 'east', headSeq: 100 }, primarySiteDown: false, candidates: [cand('a', { site: 'east', role: 'primary', available: false }), ...candidates], maxLagSeqs: null, ...over,
})

t.test('failover choice - table', async (t) => {
  const rows: [string, ChoiceInput, string | null, RegExp][] = [
    ['the highest head wins', input([cand('b', { headSeq: 90 }), cand('c', { headSeq: 99 })]), 'c', /highest head \(99\)/],
    ['ties go to the configured order', input([cand('b'), cand('c')]), 'b', /b is the consistent standby/],
    ['never an inconsistent standby, even with a higher head', input([cand('b', { headSeq: 80 }), cand('c', { headSeq: 100, consistent: false })]), 'b', /./],
    ['only inconsistent standbys: blocked, saying why', input([cand('b', { consistent: false })]), null, /b: is inconsistent .*never promoted automatically/],
    ['noFailover is excluded', input([cand('b', { noFailover: true, headSeq: 100 }), cand('c', { headSeq: 50 })]), 'c', /./],
    ['lag beyond maxLagSeqs is excluded', input([cand('b', { headSeq: 40 })], { maxLagSeqs: 50 }), null, /b: is 60 writes behind \(more than maxLagSeqs 50\)/],
    ['lag within maxLagSeqs is fine', input([cand('b', { headSeq: 60 })], { maxLagSeqs: 50 }), 'b', /./],
    ['another site first when the primary site is down', input([cand('b', { site: 'east', headSeq: 100 }), cand('c', { site: 'west', headSeq: 98 })], { primarySiteDown: true }), 'c', /in site west \(the primary's site east is down\)/],
    ['the primary site is fine: the highest head wins', input([cand('b', { site: 'east', headSeq: 100 }), cand('c', { site: 'west', headSeq: 98 })]), 'b', /./],
    ['an unreachable standby is excluded', input([cand('b', { available: false })]), null, /b: does not answer/],
    ['a node reporting primary is not a candidate', input([cand('b', { role: 'primary' })]), null, /b: reports role primary/],
    ['no standby at all', { failed: { node: 'a', site: 'east', headSeq: 1 }, primarySiteDown: false, candidates: [cand('a')], maxLagSeqs: null }, null, /has no standby/],
    ['a standby in an unavailable site ranks after one in an available site', input([cand('b', { siteAvailable: false, headSeq: 100 }), cand('c', { headSeq: 90 })]), 'c', /./],
  ]
  for (const [why, inp, want, reason] of rows) {
    const got = chooseStandby(inp)
    if (want === null) {
      t.equal(got.ok, false, `${why}: blocked`)
    } else {
      t.equal(got.ok && got.node, want, `${why}: ${want}`)
    }
    t.match(got.reason, reason, `${why}: reason "${got.reason}"`)
    t.ok(got.considered.every(c => c.node !== 'a'), `${why}: the failed primary is never considered`)
  }
})

t.test('alarms - raised once per incident, cleared on recovery with times, raised again on a new incident', async (t) => {
  const book = new AlarmBook()
  const down: AlarmCondition = { kind: 'primary-down', volume: 'vol0', node: 'a', site: 'east', message: 'a down' }
  const site: AlarmCondition = { kind: 'site-down', volume: null, node: null, site: 'east', message: 'east down' }
  t.same(book.update([], 1000), [], 'nothing holds, nothing happens')
  const e1 = book.update([down], 2000)
  t.equal(e1.length, 1)
  t.match(e1[0], { type: 'raised', alarm: { kind: 'primary-down', node: 'a', raisedAt: 2000, clearedAt: null } })
  t.same(book.update([down], 2500), [], 'still holding: not raised again')
  const e2 = book.update([down, site, site], 3000)
  t.equal(e2.length, 1, 'a second condition raises its own alarm once (duplicates in one evaluation count once)')
  t.equal(book.active().length, 2)
  const e3 = book.update([site], 4000)
  t.match(e3, [{ type: 'cleared', alarm: { kind: 'primary-down', raisedAt: 2000, clearedAt: 4000 } }], 'cleared with the time')
  t.equal(book.history().length, 1)
  const e4 = book.update([site, down], 5000)
  t.match(e4, [{ type: 'raised', alarm: { kind: 'primary-down', raisedAt: 5000 } }], 'a new incident raises a new alarm')
  t.not(e4[0]!.alarm.id, e1[0]!.alarm.id, 'with a new id')
  const book2 = new AlarmBook([...book.active(), ...book.history()])
  t.same(book2.update([site, down], 6000), [], 'alarms loaded from the store continue their incident (no re-raise after a restart)')
  t.equal(book2.update([], 7000).length, 2, 'and clear on recovery')
})

t.test('volume doc - built from members; a new revision only when something a client cares about changed', async (t) => {
  const m = (node: string, over: object = {}) => ({ cfg: { node, site: node === 'a' ? 'east' : 'west', admin: `h:${node}1`, nbd: `h:${node}2`, adminToken: null, noFailover: false }, available: true, consistent: true, ackedSeq: 5, ...over })
  const d1 = buildDoc('vol0', null, 'a', 1, [m('a'), m('b')], 1000)
  t.same(d1, { volume: 'vol0', epoch: 1, revision: 1, primary: { node: 'a', nbd: 'h:a2', admin: 'h:a1', site: 'east' }, standbys: [{ node: 'b', nbd: 'h:b2', admin: 'h:b1', site: 'west', consistent: true, ackedSeq: 5, available: true }], updatedAt: 1000 })
  const d2 = buildDoc('vol0', d1, 'a', 1, [m('a'), m('b', { ackedSeq: 99 })], 2000)
  t.equal(d2.revision, 2)
  t.ok(sameDoc(d1, d2), 'only ackedSeq moved: the same document for clients')
  t.notOk(sameDoc(d1, buildDoc('vol0', d1, 'a', 1, [m('a'), m('b', { available: false })], 2000)), 'a standby going down is a change')
  t.notOk(sameDoc(d1, buildDoc('vol0', d1, 'b', 2, [m('a'), m('b')], 2000)), 'a new primary is a change')
})

t.test('alarm conditions - what holds for a snapshot', async (t) => {
  const { alarmConditions } = await import('../src/control/conditions.js')
  const site = (s: string, available: boolean) => ({ site: s, total: 2, up: available ? 2 : 0, ratio: available ? 1 : 0, threshold: 0.5, available })
  const vol = (over: object = {}) => ({
    id: 'vol0', primary: 'a', blockedReason: null, recovering: null,
    nodes: [{ node: 'a', site: 'east', available: true, lastError: null }, { node: 'b', site: 'west', available: true, lastError: null }], ...over,
  })
  const kinds = (c: { kind: string; node: string | null; site: string | null }[]) => c.map(x => `${x.kind}:${x.node ?? x.site ?? '-'}`)
  t.same(alarmConditions({ grace: false, sites: [site('east', true)], volumes: [vol()] }), [], 'all well: nothing')
  const down = vol({ nodes: [{ node: 'a', site: 'east', available: false, lastError: 'ECONNREFUSED' }, { node: 'b', site: 'west', available: false, lastError: null }] })
  t.same(kinds(alarmConditions({ grace: false, sites: [site('east', false)], volumes: [down] })), ['site-down:east', 'primary-down:a', 'standby-down:b'])
  t.match(alarmConditions({ grace: false, sites: [], volumes: [down] })[0]!.message, /primary a of vol0 \(site east\) does not answer: ECONNREFUSED/)
  t.same(alarmConditions({ grace: true, sites: [site('east', false)], volumes: [down] }), [], 'nothing is down during the grace after a start')
  t.same(kinds(alarmConditions({ grace: false, sites: [], volumes: [vol({ primary: null })] })), ['primary-down:-'], 'no primary published')
  t.same(kinds(alarmConditions({ grace: false, sites: [], volumes: [vol({ blockedReason: 'x', recovering: { from: 'a', to: 'b', epoch: 2 } })] })), ['failover-blocked:a', 'failover:a'])
})
