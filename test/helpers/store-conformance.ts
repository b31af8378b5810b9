import type { Test } from 'tap'
import { isCode } from '../../src/util/errors.js'
import type { Alarm, ControlStore, NodePosition, VolumeDoc } from '../../src/control/store.js'

/**
 * The ControlStore conformance suite (docs/control-plane.md §3): the file
 * store and the etcd store run the same tests. `makeStore(t)` prepares one
 * fresh backing (a temp file, an etcd key prefix) and returns a fixture whose
 * `open()` makes a new store instance on it — the suite opens two to check
 * exclusive leadership and re-opens to check persistence. The fixture is
 * torn down by `t` (the suite closes the stores it opened).
 */
export interface StoreFixture {
  open(): Promise<ControlStore>
}
export type MakeStore = (t: Test) => Promise<StoreFixture>

const TTL = 2000

export function doc(volume: string, revision: number, over: Partial<VolumeDoc> = {}): VolumeDoc {
  return {
    volume,
    epoch: 1,
    revision,
    primary: { node: 'a', nbd: '127.0.0.1:10809', admin: '127.0.0.1:7800', site: 'east' },
    standbys: [{ node: 'b', nbd: '127.0.0.1:10810', admin: '127.0.0.1:7801', site: 'west', consistent: true, ackedSeq: 10, available: true }],
    updatedAt: 1_700_000_000_000 + revision,
    ...over,
  }
}

function position(node: string, headSeq: number): NodePosition {
  return { volume: 'vol0', node, role: node === 'a' ? 'primary' : 'standby', epoch: 1, headSeq, consistent: true, ackedSeqs: node === 'a' ? { b: headSeq } : {}, available: true, lastSeenAt: 1_700_000_000_000 }
}

function alarm(id: string, clearedAt: number | null = null): Alarm {
  return { id, kind: 'primary-down', volume: 'vol0', node: 'a', site: null, message: 'primary a does not answer', raisedAt: 1_700_000_000_000, clearedAt }
}

async function rejectsWith(t: Test, p: Promise<unknown>, code: string, msg: string): Promise<void> {
  try {
    await p
    t.fail(`${msg}: expected ${code}, it succeeded`)
  } catch (err) {
    t.ok(isCode(err, code as never), `${msg}: ${(err as Error).message}`)
  }
}

/** Runs every conformance test as subtests of `t`. */
export function runStoreConformance(t: Test, makeStore: MakeStore): void {
  const opened = (tt: Test, fx: StoreFixture) => async (): Promise<ControlStore> => {
    const s = await fx.open()
    tt.teardown(() => s.close())
    return s
  }

  t.test('store - campaign gives a leadership that leader() reports', async (t) => {
    const s = await opened(t, await makeStore(t))()
    t.equal(await s.leader(), null, 'nobody leads a fresh store')
    const lead = await s.campaign('ctl-1/abc', TTL)
    t.equal(lead.id, 'ctl-1/abc')
    t.ok(lead.term >= 1, `term ${lead.term} ≥ 1`)
    t.ok(lead.isHeld(), 'held')
    t.same(await s.leader(), { id: 'ctl-1/abc', term: lead.term })
    let lost: string | null = null
    lead.onLost(r => (lost = r))
    await lead.resign()
    t.notOk(lead.isHeld(), 'not held after resign')
    t.type(lost, 'string', 'onLost called on resign')
  })

  t.test('store - volume documents are compare-and-set on their version', async (t) => {
    const s = await opened(t, await makeStore(t))()
    const lead = await s.campaign('ctl-1/abc', TTL)
    t.equal(await s.getVolume('vol0'), null, 'no document yet')
    const v1 = await s.putVolume(lead, doc('vol0', 1), null)
    await rejectsWith(t, s.putVolume(lead, doc('vol0', 2), null), 'ERR_STORE_CONFLICT', 'create over an existing one')
    await rejectsWith(t, s.putVolume(lead, doc('vol0', 2), v1 + 1000), 'ERR_STORE_CONFLICT', 'a wrong version')
    const got = await s.getVolume('vol0')
    t.same(got, { value: doc('vol0', 1), version: v1 }, 'reads what was written with its version')
    const v2 = await s.putVolume(lead, doc('vol0', 2, { epoch: 2 }), v1)
    t.ok(v2 > v1, `the version grows (${v1} → ${v2})`)
    await rejectsWith(t, s.putVolume(lead, doc('vol0', 3), v1), 'ERR_STORE_CONFLICT', 'the old version after a change')
    t.equal((await s.getVolume('vol0'))?.value.epoch, 2)
    await s.putVolume(lead, doc('vol1', 1), null)
    t.same((await s.listVolumes()).map(v => v.value.volume).sort(), ['vol0', 'vol1'], 'listVolumes has both')
  })

  t.test('store - watchVolume delivers every change after a revision, in order, until unsubscribed', async (t) => {
    const s = await opened(t, await makeStore(t))()
    const lead = await s.campaign('ctl-1/abc', TTL)
    let v = await s.putVolume(lead, doc('vol0', 1), null)
    v = await s.putVolume(lead, doc('vol0', 2), v)
    const seen: number[] = []
    const unsubscribe = s.watchVolume('vol0', 1, d => seen.push(d.revision))
    const others: string[] = []
    const unOther = s.watchVolume('vol9', 0, d => others.push(d.volume))
    for (let r = 3; r <= 6; r++) v = await s.putVolume(lead, doc('vol0', r), v)
    const until = Date.now() + 5000
    while (seen.length < 5 && Date.now() < until) await new Promise(r => setTimeout(r, 20))
    t.same(seen, [2, 3, 4, 5, 6], 'revision 2 (already stored) then every new one, in order')
    unsubscribe()
    v = await s.putVolume(lead, doc('vol0', 7), v)
    await new Promise(r => setTimeout(r, 200))
    t.same(seen, [2, 3, 4, 5, 6], 'nothing after unsubscribe')
    t.same(others, [], 'a watch on another volume sees nothing')
    unOther()
  })

  t.test('store - positions, alarms and leases are kept per key', async (t) => {
    const s = await opened(t, await makeStore(t))()
    const lead = await s.campaign('ctl-1/abc', TTL)
    await s.putPosition(lead, position('a', 10))
    await s.putPosition(lead, position('b', 9))
    await s.putPosition(lead, position('a', 12))
    await s.putPosition(lead, { ...position('c', 1), volume: 'vol1' })
    const pos = (await s.positions('vol0')).sort((x, y) => x.node.localeCompare(y.node))
    t.same(pos, [position('a', 12), position('b', 9)], 'the last position per node of that volume')
    t.same(await s.positions('none'), [], 'an unknown volume has none')

    await s.putAlarm(lead, alarm('vol0/primary-down/a/1'))
    await s.putAlarm(lead, alarm('vol0/primary-down/a/1', 1_700_000_000_500))
    await s.putAlarm(lead, alarm('vol0/primary-down/a/2'))
    const alarms = (await s.alarms()).sort((x, y) => x.id.localeCompare(y.id))
    t.same(alarms, [alarm('vol0/primary-down/a/1', 1_700_000_000_500), alarm('vol0/primary-down/a/2')], 'alarms upsert by id')

    t.equal(await s.lease('vol0'), null, 'no lease yet')
    await s.putLease(lead, { volume: 'vol0', node: 'a', epoch: 1, leaseMs: 2000 })
    await s.putLease(lead, { volume: 'vol0', node: 'b', epoch: 2, leaseMs: 2000 })
    t.same(await s.lease('vol0'), { volume: 'vol0', node: 'b', epoch: 2, leaseMs: 2000 })
  })

  t.test('store - a second candidate does not lead while the first holds; a deposed leader can change nothing', async (t) => {
    const fx = await makeStore(t)
    const open = opened(t, fx)
    const s1 = await open()
    const s2 = await open()
    const lead1 = await s1.campaign('ctl-1/one', TTL)
    const v = await s1.putVolume(lead1, doc('vol0', 1), null)
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(), 500)
    let second: unknown = null
    try {
      second = await s2.campaign('ctl-2/two', TTL, ac.signal)
    } catch (err) {
      second = err
    }
    clearTimeout(timer)
    t.ok(second instanceof Error, `the second campaign does not succeed while the first leads (${(second as Error).message})`)
    t.same(await s1.leader(), { id: 'ctl-1/one', term: lead1.term }, 'the first still leads')

    await lead1.resign()
    const lead2 = await s2.campaign('ctl-2/two', TTL)
    t.ok(lead2.term > lead1.term, `the new term is higher (${lead1.term} → ${lead2.term})`)
    t.equal((await s2.getVolume('vol0'))?.value.revision, 1, 'the new leader sees what the old one wrote')
    await rejectsWith(t, s1.putVolume(lead1, doc('vol0', 2), v), 'ERR_NOT_LEADER', 'putVolume by the deposed leader')
    await rejectsWith(t, s1.putPosition(lead1, position('a', 1)), 'ERR_NOT_LEADER', 'putPosition by the deposed leader')
    await rejectsWith(t, s1.putAlarm(lead1, alarm('x')), 'ERR_NOT_LEADER', 'putAlarm by the deposed leader')
    await rejectsWith(t, s1.putLease(lead1, { volume: 'vol0', node: 'a', epoch: 1, leaseMs: 1 }), 'ERR_NOT_LEADER', 'putLease by the deposed leader')
    t.equal((await s2.getVolume('vol0'))?.value.revision, 1, 'the document is unchanged')
    await s2.putVolume(lead2, doc('vol0', 2), (await s2.getVolume('vol0'))!.version)
  })

  t.test('store - everything survives close and re-open', async (t) => {
    const fx = await makeStore(t)
    const s1 = await fx.open()
    const lead = await s1.campaign('ctl-1/abc', TTL)
    const v = await s1.putVolume(lead, doc('vol0', 3, { epoch: 2 }), null)
    await s1.putPosition(lead, position('b', 44))
    await s1.putAlarm(lead, alarm('vol0/primary-down/a/1'))
    await s1.putLease(lead, { volume: 'vol0', node: 'a', epoch: 2, leaseMs: 2000 })
    await s1.close()
    const s2 = await opened(t, fx)()
    t.same(await s2.getVolume('vol0'), { value: doc('vol0', 3, { epoch: 2 }), version: v }, 'volume document and version')
    t.same(await s2.positions('vol0'), [position('b', 44)], 'positions')
    t.same(await s2.alarms(), [alarm('vol0/primary-down/a/1')], 'alarms')
    t.same(await s2.lease('vol0'), { volume: 'vol0', node: 'a', epoch: 2, leaseMs: 2000 }, 'lease')
    const lead2 = await s2.campaign('ctl-1/def', TTL)
    t.ok(lead2.term > lead.term, 'a later leadership has a higher term')
    await s2.putVolume(lead2, doc('vol0', 4), v)
  })
}
