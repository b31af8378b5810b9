import t from 'tap'
import { Cluster } from './helpers/cluster.js'
import { runFailoverAct } from '../src/demo/failover-act.js'

t.test('demo failover act - kill the primary room under writes through nbd-proxy: the other room takes over, every acknowledged write kept, the room rejoins incrementally', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b', 'c'], size: 8 * 1024 * 1024, journalSize: 4 * 1024 * 1024, protocol: 'sync' })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  await c.waitInSync('c')
  const r = await runFailoverAct(c, t, { sites: { a: 'east', b: 'east', c: 'west' }, heartbeatMs: 200, timeoutMs: 1000, leaseMs: 1600, writes: 300, note: s => t.comment(s) })
  t.equal(r.error, null, `no error (${r.error})`)
  t.same(r.killed, ['a', 'b'], 'the whole east room was killed')
  t.equal(r.newPrimary, 'c', 'c in the other room took over')
  t.ok(r.publishedMs !== null && r.publishedMs <= 3 * r.timeoutMs, `published in ${r.publishedMs} ms ≤ 3 × timeoutMs`)
  t.ok(r.writesAcked >= 2 * 300, `the client wrote through nbd-proxy before and after the kill (${r.writesBeforeKill} + ${r.writesAcked - r.writesBeforeKill})`)
  t.equal(r.writeErrors, 0, `no client write failed (${r.errors.join('; ')})`)
  t.equal(r.proxyFollowed, true, 'nbd-proxy follows c in the new epoch')
  t.equal(r.writesMissing, 0, `all ${r.writesAcked} acknowledged writes on c`)
  t.equal(r.demoted, true, 'the old primary a is a standby again')
  t.notOk(Object.values(r.rejoinModes).includes('FULL'), `rejoined without FULL: ${JSON.stringify(r.rejoinModes)}`)
  t.equal(r.identical, true, 'byte-identical at the end')
  t.equal(r.ok, true)
})
