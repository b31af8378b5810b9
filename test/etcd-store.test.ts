/**
 * The etcd store against a real one-member etcd: the ControlStore contract
 * (CAS, ordered watch, leadership guard) and what only etcd does (leader
 * key deleted behind a leader's back, a deposed leader whose clock still
 * says it leads). The shared conformance suite runs in
 * etcd-conformance.test.ts; `storeContract` here checks more of the same
 * contract (history replay, "/" in names, order over 35 changes).
 */
import t, { type Test } from 'tap'
import { Etcd3 } from 'etcd3'
import { EtcdCluster, skipWithoutEtcd } from './helpers/etcd.js'
import { waitFor } from './helpers/cluster.js'
import { EtcdStore } from '../src/control/store-etcd.js'
import type { ControlStore, Leadership, VolumeDoc } from '../src/control/store.js'
import { isCode } from '../src/util/errors.js'

const skip = skipWithoutEtcd()

function doc(volume: string, revision: number, epoch = 1): VolumeDoc {
  return { volume, epoch, revision, primary: { node: 'a', nbd: '127.0.0.1:1', admin: '127.0.0.1:2', site: 'east' }, standbys: [], updatedAt: 1733000000000 + revision }
}

async function rejectsCode(t: Test, p: Promise<unknown>, code: string, what: string): Promise<void> {
  try {
    await p
    t.fail(`${what}: expected ${code}, it succeeded`)
  } catch (err) {
    t.ok(isCode(err, code as never), `${what}: ${code}`, { got: err })
  }
}

type MakeStore = (t: Test) => Promise<ControlStore>

/** The ControlStore contract, for any store made by `makeStore` (fresh and empty each call). */
function storeContract(t: Test, makeStore: MakeStore): void {
  t.test('volume documents are compare-and-set on their version', async (t) => {
    const s = await makeStore(t)
    const lead = await s.campaign('ctl-a', 4000)
    t.equal(await s.getVolume('vol0'), null, 'absent at first')
    const v1 = await s.putVolume(lead, doc('vol0', 1), null)
    await rejectsCode(t, s.putVolume(lead, doc('vol0', 1), null), 'ERR_STORE_CONFLICT', 'create over an existing document')
    const v2 = await s.putVolume(lead, doc('vol0', 2), v1)
    t.ok(v2 > v1, 'the version increases')
    await rejectsCode(t, s.putVolume(lead, doc('vol0', 3), v1), 'ERR_STORE_CONFLICT', 'write at a stale version')
    t.same(await s.getVolume('vol0'), { value: doc('vol0', 2), version: v2 }, 'the losing write changed nothing')
    await s.putVolume(lead, doc('vol1', 1), null)
    const all = await s.listVolumes()
    t.same(all.map((v) => v.value.volume), ['vol0', 'vol1'])
    t.equal(all[0]!.version, v2)
  })

  t.test('positions, alarms and leases read back what the leader wrote', async (t) => {
    const s = await makeStore(t)
    const lead = await s.campaign('ctl-a', 4000)
    const pos = { volume: 'vol/0', node: 'b', role: 'standby' as const, epoch: 2, headSeq: 10, consistent: true, ackedSeqs: {}, available: true, lastSeenAt: 5 }
    await s.putPosition(lead, { ...pos, node: 'c', headSeq: 9 })
    await s.putPosition(lead, pos)
    await s.putPosition(lead, { ...pos, headSeq: 11 })
    await s.putPosition(lead, { ...pos, volume: 'vol', node: 'x' })
    t.same((await s.positions('vol/0')).map((p) => [p.node, p.headSeq]), [['b', 11], ['c', 9]], 'per volume, latest per node, a "/" in a name aliases nothing')
    const alarm = { id: 'vol0/primary-down/a/1', kind: 'primary-down' as const, volume: 'vol0', node: 'a', site: null, message: 'a is down', raisedAt: 2, clearedAt: null }
    await s.putAlarm(lead, alarm)
    await s.putAlarm(lead, { ...alarm, id: 'x', raisedAt: 1 })
    await s.putAlarm(lead, { ...alarm, clearedAt: 3 })
    t.same((await s.alarms()).map((a) => [a.id, a.clearedAt]), [['x', null], [alarm.id, 3]])
    t.equal(await s.lease('vol0'), null)
    await s.putLease(lead, { volume: 'vol0', node: 'a', epoch: 2, leaseMs: 2000 })
    t.same(await s.lease('vol0'), { volume: 'vol0', node: 'a', epoch: 2, leaseMs: 2000 })
  })

  t.test('watchVolume delivers the current document, then every change in order', async (t) => {
    const s = await makeStore(t)
    const lead = await s.campaign('ctl-a', 4000)
    let v = await s.putVolume(lead, doc('vol0', 1), null)
    const early: number[] = []
    const stopEarly = s.watchVolume('vol0', 0, (d) => early.push(d.revision))
    await waitFor(() => early.length === 1, 10000, 'the current document')
    for (let r = 2; r <= 30; r++) v = await s.putVolume(lead, doc('vol0', r), v)
    const late: number[] = []
    const stopLate = s.watchVolume('vol0', 25, (d) => late.push(d.revision))
    const fresh: number[] = []
    s.watchVolume('vol9', 0, (d) => fresh.push(d.revision))
    await new Promise((r) => setTimeout(r, 300))
    for (let r = 31; r <= 35; r++) v = await s.putVolume(lead, doc('vol0', r), v)
    await s.putVolume(lead, doc('vol9', 1), null)
    await waitFor(() => early.length === 35 && late.length === 10 && fresh.length === 1, 10000, 'every change')
    t.same(early, Array.from({ length: 35 }, (_, i) => i + 1), 'every revision once, in order')
    t.same(late, [26, 27, 28, 29, 30, 31, 32, 33, 34, 35], 'a watcher five changes behind gets those five (from etcd history), then the new ones')
    t.same(fresh, [1], 'a watch on a document created later sees its creation')
    stopEarly()
    stopLate()
    await s.putVolume(lead, doc('vol0', 36), v)
    await new Promise((r) => setTimeout(r, 300))
    t.equal(early.length, 35, 'nothing after unsubscribe')
  })

  t.test('one leader at a time; a resigned leader can write nothing', async (t) => {
    const a = await makeStore(t)
    const lead = await a.campaign('ctl-a', 4000)
    t.ok(lead.isHeld())
    t.same(await a.leader(), { id: 'ctl-a', term: lead.term })
    const v1 = await a.putVolume(lead, doc('vol0', 1), null)
    let lost: string | null = null
    lead.onLost((r) => (lost = r))
    await lead.resign()
    t.notOk(lead.isHeld(), 'not held after resign')
    t.equal(lost, 'resigned', 'onLost says so')
    await rejectsCode(t, a.putVolume(lead, doc('vol0', 2), v1), 'ERR_NOT_LEADER', 'volume write after resign')
    await rejectsCode(t, a.putAlarm(lead, { id: 'z', kind: 'failover', volume: null, node: null, site: null, message: '', raisedAt: 0, clearedAt: null }), 'ERR_NOT_LEADER', 'alarm write after resign')
    const again = await a.campaign('ctl-a2', 4000)
    t.ok(again.term > lead.term, 'a new leadership has a larger term')
    t.same((await a.getVolume('vol0'))!.value, doc('vol0', 1), 'the refused write changed nothing')
  })
}

t.test('etcd store', { skip }, async (t) => {
  const etcd = await EtcdCluster.start()
  t.teardown(() => etcd.stop())
  let n = 0
  const open = (t: Test, prefix: string): EtcdStore => {
    const s = new EtcdStore({ hosts: etcd.endpoints(), prefix, opTimeoutMs: 5000 })
    t.teardown(() => s.close())
    return s
  }
  const makeStore: MakeStore = async (t) => open(t, `/test-${process.pid}-${++n}/`)

  t.test('etcd store - contract', async (t) => storeContract(t, makeStore))

  t.test('etcd store - a second candidate leads once the first resigns, with a larger term', async (t) => {
    const prefix = `/test-${process.pid}-${++n}/`
    const a = open(t, prefix)
    const b = open(t, prefix)
    const la = await a.campaign('ctl-a', 4000)
    let bLeads: Leadership | null = null
    const pending = b.campaign('ctl-b', 4000).then((l) => (bLeads = l))
    await new Promise((r) => setTimeout(r, 500))
    t.equal(bLeads, null, 'b waits while a leads')
    await la.resign()
    const lb = await pending
    t.ok(lb.term > la.term)
    t.same(await a.leader(), { id: 'ctl-b', term: lb.term }, 'every store sees the new leader')
  })

  t.test('etcd store - a deposed leader whose clock says it still leads is refused by etcd itself', async (t) => {
    const prefix = `/test-${process.pid}-${++n}/`
    const a = open(t, prefix)
    const b = open(t, prefix)
    const la = await a.campaign('ctl-a', 4000)
    const v1 = await a.putVolume(la, doc('vol0', 1), null)
    await la.resign()
    const lb = await b.campaign('ctl-b', 4000)
    // the old leadership with its local check defeated: only the transaction's compare stands in the way
    const stale: Leadership = { id: la.id, term: la.term, isHeld: () => true, onLost: () => {}, resign: async () => {} }
    await rejectsCode(t, a.putVolume(stale, doc('vol0', 2), v1), 'ERR_NOT_LEADER', 'volume CAS at the right version')
    await rejectsCode(t, a.putLease(stale, { volume: 'vol0', node: 'x', epoch: 9, leaseMs: 1 }), 'ERR_NOT_LEADER', 'lease')
    // same term, another id (a forged or confused candidate)
    const forged: Leadership = { ...stale, id: 'ctl-x', term: lb.term }
    await rejectsCode(t, a.putPosition(forged, { volume: 'vol0', node: 'a', role: 'primary', epoch: 1, headSeq: 0, consistent: true, ackedSeqs: {}, available: true, lastSeenAt: null }), 'ERR_NOT_LEADER', 'right term, wrong id')
    t.same((await b.getVolume('vol0'))!.value, doc('vol0', 1))
    t.equal(await b.lease('vol0'), null)
    t.same(await b.positions('vol0'), [])
  })

  t.test('etcd store - deleting the leader key ends the leadership at once', async (t) => {
    const prefix = `/test-${process.pid}-${++n}/`
    const a = open(t, prefix)
    const lead = await a.campaign('ctl-a', 10000)
    let reason: string | null = null
    lead.onLost((r) => (reason = r))
    const raw = new Etcd3({ hosts: etcd.endpoints()[0]! })
    t.teardown(() => raw.close())
    await raw.delete().key(`${prefix}leader`)
    await waitFor(() => reason !== null, 5000, 'onLost')
    t.match(reason, /leader key deleted/)
    t.notOk(lead.isHeld())
    await rejectsCode(t, a.putVolume(lead, doc('vol0', 1), null), 'ERR_NOT_LEADER', 'write after the key was deleted')
  })

  t.test('etcd store - campaign can be aborted; calls after close are refused', async (t) => {
    const prefix = `/test-${process.pid}-${++n}/`
    const a = open(t, prefix)
    const b = open(t, prefix)
    await a.campaign('ctl-a', 4000)
    const ac = new AbortController()
    const p = b.campaign('ctl-b', 4000, ac.signal)
    setTimeout(() => ac.abort(new Error('stop campaigning')), 200)
    await t.rejects(p, /stop campaigning/)
    await b.close()
    await rejectsCode(t, b.getVolume('vol0'), 'ERR_SHUTDOWN', 'read after close')
    await a.close()
    const c = open(t, prefix)
    t.equal(await c.leader(), null, 'closing the leading store revoked its leadership')
  })

  t.test('etcd store - an unreachable etcd fails calls with ERR_STORE_UNAVAILABLE in bounded time', async (t) => {
    const dead = new EtcdStore({ hosts: ['127.0.0.1:1'], opTimeoutMs: 1500 })
    t.teardown(() => dead.close())
    const t0 = Date.now()
    await rejectsCode(t, dead.getVolume('vol0'), 'ERR_STORE_UNAVAILABLE', 'read')
    t.ok(Date.now() - t0 < 4000, `answered in ${Date.now() - t0} ms`)
  })
})
