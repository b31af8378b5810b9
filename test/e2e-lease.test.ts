import t from 'tap'
import { existsSync } from 'node:fs'
import { Cluster, waitFor } from './helpers/cluster.js'
import { TestController, writeLoop } from './helpers/test-controller.js'
import type { WriteEvent } from './helpers/test-controller.js'
import { Errno } from '../src/nbd/constants.js'

const MiB = 1024 * 1024
const LEASE_MS = 1500
const MARGIN_MS = 300

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const summary = (ev: WriteEvent[]) => `${ev.filter((e) => e.ok).length} ok / ${ev.filter((e) => !e.ok).length} refused`

/**
 * A primary and a standby as real agent processes; the test is the controller
 * (leases through the admin API, its own monotonic clock) and an NBD client
 * writing block after block with timestamps.
 */
t.test('e2e lease - lease, expiry, failsafe, standby loss, restart fenced; no write accepted without a valid lease', async (t) => {
  const c = await Cluster.create(t, {
    nodes: ['a', 'b'],
    size: 8 * MiB,
    journalSize: 4 * MiB,
    tunables: { heartbeatMs: 100, peerTimeoutMs: 1500, leaseMarginMs: MARGIN_MS },
  })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  const ctl = new TestController(c, 'test-ctl/1', LEASE_MS)
  t.teardown(() => ctl.stopAll())
  let nbd = await c.nbd('a')
  await nbd.write(0, Buffer.alloc(4096, 1))
  t.pass('not controlled: writes need no lease')

  // taken over: a lease, renewed every 200 ms
  const first = await ctl.grant('a')
  t.match(first, { node: 'a', role: 'primary', epoch: 1, lease: { holder: 'test-ctl/1' } }, 'the grant answers the node position and the lease')
  t.ok((first.lease as { validForMs: number }).validForMs <= LEASE_MS - MARGIN_MS, 'valid for at most leaseMs − margin')
  t.ok(existsSync(`${c.node('a').data}.meta.control.json`), 'control persisted next to the metadata')
  ctl.renew('a')
  let end = performance.now() + 1000
  let ev = await writeLoop((o, d) => nbd.write(o, d), { until: () => performance.now() > end, blocks: 64 })
  t.ok(ev.length > 5 && ev.every((e) => e.ok), `writes under a renewed lease succeed (${summary(ev)})`)

  // failsafe: the lease runs out, but b is connected and confirms: writes continue
  ctl.stop('a')
  const stoppedAt = ctl.lastSentAt.get('a')!
  end = stoppedAt + 2 * LEASE_MS
  ev = await writeLoop((o, d) => nbd.write(o, d), { until: () => performance.now() > end, blocks: 64 })
  t.ok(ev.every((e) => e.ok), `lease expired, standby confirming: writes continue by the failsafe (${summary(ev)})`)
  let st = await c.status('a')
  t.match(st.control, { controlled: true, lease: { valid: false }, failsafe: { active: true, confirmedBy: ['b'] }, writable: true }, 'status shows the failsafe at work')

  // the standby dies: no confirmation, writes stop; reads keep working
  await c.kill('b')
  const killedAt = performance.now()
  end = killedAt + 2000
  ev = await writeLoop((o, d) => nbd.write(o, d), { until: () => performance.now() > end, blocks: 64 })
  const firstRefusal = ev.find((e) => !e.ok)
  t.ok(firstRefusal, `writes stop once the standby is gone (${summary(ev)})`)
  t.ok(firstRefusal!.start - killedAt < LEASE_MS, `within a failsafe window of the kill (${Math.round(firstRefusal!.start - killedAt)} ms)`)
  t.equal(firstRefusal!.errno, Errno.EPERM, 'refused with EPERM')
  t.ok(ev.slice(ev.indexOf(firstRefusal!)).every((e) => !e.ok), 'and stay stopped')
  const back = await nbd.read(0, 4096)
  t.equal(back.length, 4096, 'reads are still served')
  st = await c.status('a')
  t.match(st.control, { writable: false, failsafe: { active: false } })

  // write by write: a lease granted, renewed, then not renewed; b is down, so only the lease allows writes
  await ctl.grant('a')
  ctl.renew('a', 150)
  await sleep(600)
  ctl.stop('a')
  const last = ctl.lastSentAt.get('a')!
  // the agent counts from the send time plus the smallest offset it saw: at most the first grant's one-way delay late
  const bound = last + LEASE_MS - MARGIN_MS + ctl.firstRtt.get('a')!
  end = last + LEASE_MS + 1000
  ev = await writeLoop((o, d) => nbd.write(o, d), { until: () => performance.now() > end, blocks: 64 })
  const oks = ev.filter((e) => e.ok)
  const lateOk = oks.filter((e) => e.start >= bound)
  t.ok(oks.length > 0, `writes before expiry succeed (${summary(ev)})`)
  t.same(lateOk, [], `no write accepted after renewal + lease − margin (bound ${Math.round(bound - last)} ms after the last grant)`)
  const stop = ev.find((e) => !e.ok)
  t.ok(stop && stop.start - last < LEASE_MS - MARGIN_MS + 500, `writes fail within leaseMs − margin (+ slack) of the last renewal (${stop ? Math.round(stop.start - last) : '-'} ms)`)
  t.ok(ev.slice(ev.indexOf(stop!)).every((e) => !e.ok), 'nothing succeeds after the first refusal')

  // restart of a controlled primary: fenced until it holds a lease again
  await nbd.close().catch(() => {})
  await c.kill('a')
  await c.start('a')
  st = await c.status('a')
  t.match(st.control, { controlled: true, controller: 'test-ctl/1', lease: null, writable: false }, 'restarted under control, no lease')
  nbd = await c.nbd('a')
  const before = await nbd.read(0, 4096)
  await t.rejects(nbd.write(0, Buffer.alloc(4096, 2)), { errno: Errno.EPERM }, 'no client write after a restart before a grant')
  t.same(await nbd.read(0, 4096), before, 'reads served, the refused write left nothing')
  t.equal((await c.status('a')).headSeq, st.headSeq, 'and took no seq')
  await ctl.grant('a')
  await nbd.write(0, Buffer.alloc(4096, 3))
  t.equal((await nbd.read(0, 4096))[0], 3, 'writable again with a lease')
  await nbd.close()

  // release: the operator's escape hatch
  await c.admin('a', 'POST', '/v1/control/release', {})
  await sleep(LEASE_MS)
  nbd = await c.nbd('a')
  await nbd.write(0, Buffer.alloc(4096, 4))
  t.pass('released: writes need no lease')
  await nbd.close()
  await waitFor(async () => (await c.status('a')).control?.controlled === false, 2000, 'released')

  // failsafe hand-over: a writes by the failsafe alone (no renewal, b confirming); the controller promotes b.
  // b stops confirming at once, and takes the new epoch only once its last confirmation has run out.
  await c.start('b')
  await c.waitInSync('b')
  await ctl.grant('a')
  await sleep(LEASE_MS)
  st = await c.status('a')
  t.match(st.control, { lease: { valid: false }, failsafe: { active: true } }, 'a writes by the failsafe')
  nbd = await c.nbd('a')
  let promoting = true
  const aWrites = writeLoop((o, d) => nbd.write(o, d), { until: () => !promoting, blocks: 64, tag: 0x77 })
  await sleep(300)
  const p0 = performance.now()
  const promoted = await ctl.promote('b', 1)
  const p1 = performance.now()
  promoting = false
  const aEv = await aWrites
  t.equal(promoted.epoch, 2)
  t.ok(p1 - p0 >= LEASE_MS - MARGIN_MS - 400, `the promotion waited for b's last failsafe confirmation to run out (${Math.round(p1 - p0)} ms)`)
  const aOk = aEv.filter((e) => e.ok)
  t.ok(aOk.length > 0, `a wrote by the failsafe until the promotion began (${summary(aEv)})`)
  t.ok(aOk.every((e) => e.start < p1), 'no write accepted by a after b became writable')
  const nb = await c.nbd('b')
  await nb.write(0, Buffer.alloc(4096, 0x88))
  t.pass('b, the new primary, accepts writes')
  await waitFor(async () => (await c.status('a')).control?.fenced != null, 10_000, 'a learns epoch 2')
  await t.rejects(nbd.write(0, Buffer.alloc(4096, 9)), { errno: Errno.EPERM }, 'the old primary accepts nothing more')
  await nb.close()
  await nbd.close()
})
