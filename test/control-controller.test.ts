import t from 'tap'
import type { Test } from 'tap'
import { join } from 'node:path'
import { Controller } from '../src/control/controller.js'
import { parseControllerConfig } from '../src/control/config.js'
import { FileStore } from '../src/control/file-store.js'
import { silentLogger } from '../src/util/log.js'
import { waitFor } from './helpers/cluster.js'
import { FakeAgent } from './helpers/fake-agent.js'

const HB = 100
const TIMEOUT = 500
const LEASE = 600

async function setup(t: Test, agents: FakeAgent[], over: Record<string, unknown> = {}, storePath = join(t.testdir(), 'state.json')) {
  const cfg = parseControllerConfig({
    listen: '127.0.0.1:0', heartbeatMs: HB, timeoutMs: TIMEOUT, leaseMs: LEASE,
    volumes: [{ id: 'vol0', nodes: agents.map((a, i) => ({ node: a.node, site: i === 0 ? 'east' : 'west', admin: a.admin, nbd: `127.0.0.1:${20000 + i}`, adminToken: 'tok' })) }],
    ...over,
  }, '/tmp')
  const store = await FileStore.open(storePath)
  const ctl = new Controller(cfg, store, silentLogger())
  await ctl.start()
  t.teardown(async () => { await ctl.stop(); await store.close() })
  return { ctl, store, storePath }
}

t.test('controller shell - fences before promoting: the promotion comes ≥ leaseMs after the last grant sent to the old primary', async (t) => {
  const a = await FakeAgent.start(t, 'a', 'primary')
  const b = await FakeAgent.start(t, 'b', 'standby')
  const { ctl } = await setup(t, [a, b])
  await waitFor(() => a.callsTo('/v1/control/lease').length >= 3, 5000, 'lease grants to a')
  const grant = a.callsTo('/v1/control/lease').at(-1)!.body
  t.match(grant, { controller: ctl.id, term: 1, epoch: 1, leaseMs: LEASE }, 'the grant names the controller, its term, the epoch and the lease')
  a.down = true
  await waitFor(() => b.callsTo('/promote').length === 1, 10_000, 'b promoted')
  const promote = b.callsTo('/promote')[0]!
  const lastGrantSent = Math.max(...a.callsTo('/v1/control/lease').map(c => c.body.sentAtMs as number))
  t.ok(promote.at >= lastGrantSent + LEASE, `promote at ${promote.at.toFixed(0)} ≥ last grant sent ${lastGrantSent.toFixed(0)} + leaseMs ${LEASE}`)
  t.match(promote.body, { controller: ctl.id, expectEpoch: 1, force: false, lease: { controller: ctl.id, leaseMs: LEASE } })
  await waitFor(() => ctl.volumes.get('vol0')!.doc?.value.primary?.node === 'b', 5000, 'b published')
  t.equal(ctl.volumes.get('vol0')!.doc!.value.epoch, 2)
  await waitFor(() => b.callsTo('/v1/control/lease').some(c => c.body.epoch === 2), 5000, 'the new primary gets lease renewals in its epoch')

  // the old primary returns, still primary in epoch 1: demoted, then it counts as back
  a.down = false
  await waitFor(() => a.callsTo('/demote').length >= 1 && a.role === 'standby', 5000, 'the stale primary demoted')
  await waitFor(() => ctl.alarms.active().length === 0, 5000, 'alarms cleared once a is back as a standby')
  t.ok(ctl.alarms.history().some(x => x.kind === 'failover'), 'the failover alarm was raised and cleared')
})

t.test('controller shell - never promotes an inconsistent standby; the blocked failover says why, and proceeds once the standby is consistent', async (t) => {
  const a = await FakeAgent.start(t, 'a', 'primary')
  const b = await FakeAgent.start(t, 'b', 'standby')
  b.consistent = false
  const { ctl } = await setup(t, [a, b])
  await waitFor(() => ctl.volumes.get('vol0')!.doc !== null, 5000, 'published')
  a.down = true
  await waitFor(() => ctl.alarms.active().some(x => x.kind === 'failover-blocked'), 5000, 'failover-blocked alarm')
  const blocked = ctl.alarms.active().find(x => x.kind === 'failover-blocked')!
  t.match(blocked.message, /b: is inconsistent .*never promoted automatically/)
  await new Promise(r => setTimeout(r, 3 * TIMEOUT))
  t.equal(b.callsTo('/promote').length, 0, 'no promote call in 3 × timeoutMs')
  t.equal(ctl.failovers.filter(f => f.state === 'blocked').length, 1, 'one blocked record in the timeline (not one per evaluation)')
  b.consistent = true
  await waitFor(() => b.callsTo('/promote').length === 1, 5000, 'promoted once consistent')
  await waitFor(() => !ctl.alarms.active().some(x => x.kind === 'failover-blocked'), 5000, 'failover-blocked cleared')
})

t.test('controller shell - a restarted controller does not fail over a primary that is slow to answer its first heartbeat (regression)', async (t) => {
  const a = await FakeAgent.start(t, 'a', 'primary')
  const b = await FakeAgent.start(t, 'b', 'standby')
  const first = await setup(t, [a, b])
  await waitFor(() => first.ctl.volumes.get('vol0')!.doc !== null, 5000, 'published')
  await first.ctl.stop()
  await first.store.close()
  a.statusDelayMs = 3 * HB // slower than a heartbeat, well within the timeout
  const second = await setup(t, [a, b], {}, first.storePath)
  await new Promise(r => setTimeout(r, 3 * TIMEOUT))
  t.equal(b.callsTo('/promote').length, 0, 'no promotion')
  t.equal(a.callsTo('/demote').length, 0, 'the primary was not demoted')
  t.equal(second.ctl.volumes.get('vol0')!.doc!.value.primary?.node, 'a', 'a stays published')
  t.same(second.ctl.failovers, [], 'no failover in the timeline')
})

t.test('controller shell - an agent without the lease endpoint is marked unsupported once, and failover still works', async (t) => {
  const a = await FakeAgent.start(t, 'a', 'primary')
  const b = await FakeAgent.start(t, 'b', 'standby')
  a.leaseSupported = false
  const { ctl } = await setup(t, [a, b])
  await waitFor(() => a.callsTo('/v1/control/lease').length === 1, 5000, 'one lease attempt')
  await new Promise(r => setTimeout(r, 5 * HB))
  t.equal(a.callsTo('/v1/control/lease').length, 1, 'not retried every heartbeat')
  t.equal(ctl.volumes.get('vol0')!.nodes.get('a')!.leaseSupported, false)
  a.down = true
  await waitFor(() => b.callsTo('/promote').length === 1, 10_000, 'b promoted')
})

t.test('controller shell - a heartbeat answer sent before the promotion does not make the new primary look like a standby (regression)', async (t) => {
  const a = await FakeAgent.start(t, 'a', 'primary')
  const b = await FakeAgent.start(t, 'b', 'standby')
  b.statusDelayMs = 2.5 * HB // a heartbeat to b is nearly always in flight, carrying the role from before
  const { ctl } = await setup(t, [a, b])
  await waitFor(() => ctl.volumes.get('vol0')!.doc !== null && b.calls.length === 0, 5000, 'published')
  a.down = true
  await waitFor(() => b.callsTo('/promote').length === 1, 10_000, 'b promoted')
  await new Promise(r => setTimeout(r, 3 * TIMEOUT))
  t.equal(b.callsTo('/demote').length, 0, 'the new primary is not demoted by a stale answer')
  t.equal(b.callsTo('/promote').length, 1, 'no second failover')
  t.equal(ctl.failovers.length, 1, 'one failover in the timeline')
  t.equal(ctl.volumes.get('vol0')!.doc!.value.primary?.node, 'b')
})
