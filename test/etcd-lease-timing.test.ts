/**
 * Why leadership is not fenced on the etcd3 client's `lost` event: with etcd
 * gone (SIGKILL) or hung (SIGSTOP), `lost` fires about 2 × TTL after the
 * last keepalive, long after etcd itself may have let the lease expire and
 * another controller taken the key. Our Leadership turns `isHeld()` false by
 * the last confirmed keepalive's send time + TTL − margin. The figures are
 * printed (docs/etcd.md quotes them).
 */
import t, { type Test } from 'tap'
import { performance } from 'node:perf_hooks'
import { Etcd3 } from 'etcd3'
import { EtcdCluster, skipWithoutEtcd } from './helpers/etcd.js'
import { waitFor } from './helpers/cluster.js'
import { EtcdStore } from '../src/control/store-etcd.js'

const skip = skipWithoutEtcd()
const TTL_MS = 2000
const MARGIN_MS = 500

async function measure(t: Test, etcd: EtcdCluster, signal: 'SIGSTOP' | 'SIGKILL'): Promise<void> {
  const store = new EtcdStore({ hosts: etcd.endpoints(), prefix: `/timing-${signal}/`, opTimeoutMs: 1000, leaderMarginMs: MARGIN_MS })
  t.teardown(() => store.close())
  const lead = await store.campaign('ctl-a', TTL_MS)
  // the plain etcd3 way: a lease with the client's own keepalive loop, watched through `lost`
  const raw = new Etcd3({ hosts: etcd.endpoints() })
  t.teardown(() => raw.close())
  const lease = raw.lease(TTL_MS / 1000)
  let lastKeepalive = 0
  let lostAt = 0
  lease.on('keepaliveSucceeded', () => (lastKeepalive = performance.now()))
  lease.on('lost', () => (lostAt = performance.now()))
  await lease.grant()
  await waitFor(() => lastKeepalive > 0, 5000, 'a first keepalive')
  await new Promise((r) => setTimeout(r, 1000))

  const stoppedAt = performance.now()
  await etcd.kill(0, signal)
  let heldUntil = 0
  await waitFor(() => {
    if (!lead.isHeld()) heldUntil = heldUntil || performance.now()
    return heldUntil > 0
  }, 10000, 'isHeld() to turn false')
  await waitFor(() => lostAt > 0, 20000, 'the etcd3 lost event')

  const heldAfterStop = Math.round(heldUntil - stoppedAt)
  const lostAfterKeepalive = Math.round(lostAt - lastKeepalive)
  t.comment(`${signal} etcd: isHeld() false ${heldAfterStop} ms after etcd stopped; etcd3 'lost' ${lostAfterKeepalive} ms after its last keepalive (TTL ${TTL_MS} ms, margin ${MARGIN_MS} ms)`)
  t.ok(heldAfterStop <= TTL_MS - MARGIN_MS + 250, `our leadership ends within TTL − margin of etcd going away (${heldAfterStop} ms)`)
  t.ok(lostAfterKeepalive > TTL_MS, `the lost event comes later than the TTL (${lostAfterKeepalive} ms): fencing on it would be unsafe`)
  t.ok(heldUntil < lostAt, 'we step down before the lost event')

  if (signal === 'SIGSTOP') await etcd.kill(0, 'SIGCONT')
  else await etcd.restart(0)
  await etcd.waitHealthy(0)
  const again = await store.campaign('ctl-a', TTL_MS)
  t.ok(again.term > lead.term, 'leads again, in a new term, once etcd is back')
}

t.test('etcd leadership - isHeld() ends by TTL − margin; the etcd3 lost event comes ~2 × TTL late', { skip }, async (t) => {
  const etcd = await EtcdCluster.start()
  t.teardown(() => etcd.stop())
  await t.test('etcd hung (SIGSTOP)', (t) => measure(t, etcd, 'SIGSTOP'))
  await t.test('etcd killed (SIGKILL)', (t) => measure(t, etcd, 'SIGKILL'))
})
