import t from 'tap'
import { Cluster, waitFor } from './helpers/cluster.js'
import { ControllerProc } from './helpers/controller-proc.js'
import { webhookServer } from './helpers/webhook.js'
import type { WebhookEvent } from './helpers/webhook.js'

const MiB = 1024 * 1024
const BS = 4096

function blockData(i: number): Buffer {
  const b = Buffer.alloc(BS, (i * 7 + 1) & 0xff)
  b.writeUInt32BE(i, 0)
  b.writeUInt32BE(0xb10c, 4)
  return b
}

function countOf(events: WebhookEvent[], type: string, kind: string, who: string): number {
  return events.filter(e => e.event === type && e.alarm.kind === kind && (e.alarm.node === who || e.alarm.site === who)).length
}

t.test('controller - kill -9 of the primary under sync writes: standby promoted and published within 3 × timeoutMs, every acknowledged write on it, old primary rejoins', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 16 * MiB, journalSize: 8 * MiB, protocol: 'sync' })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  const hook = await webhookServer(t)
  const ctl = await ControllerProc.create(t, c, { a: 'east', b: 'west' }, { alarm: hook.url })
  const timeoutMs = ctl.cfg.timeoutMs as number
  await ctl.start()
  let doc: any = null
  await waitFor(async () => (doc = await ctl.get('/v1/volumes/vol0').catch(() => null)) !== null, 10_000, 'the first document')
  t.equal(doc.primary.node, 'a', 'a is published as primary')
  t.equal(doc.standbys[0].node, 'b')
  const epoch0 = doc.epoch as number

  // a write load through a's NBD export: write i goes to block i, so each can be checked on its own
  const nbd = await c.nbd('a')
  const acked: number[] = []
  let stop = false
  const load = (async () => {
    for (let i = 0; !stop && i < (16 * MiB) / BS; i++) {
      try {
        await nbd.write(i * BS, blockData(i))
        acked.push(i)
      } catch (err) {
        // a refused write (a lease blip on a loaded machine) is not acknowledged: go on; once killed, stop
        if (stop || /closed|ECONNRESET|EPIPE/i.test((err as Error).message)) return
        await new Promise(r => setTimeout(r, 20))
      }
    }
  })()
  await waitFor(() => acked.length >= 200, 30_000, '200 acknowledged writes')
  const killedAt = Date.now()
  await c.kill('a', 'SIGKILL')
  stop = true
  await load
  await nbd.close().catch(() => {})
  t.comment(`${acked.length} writes acknowledged before the kill`)

  const next = await ctl.get(`/v1/volumes/vol0?after=${epoch0}&timeoutMs=${6 * timeoutMs}`)
  const publishedIn = Date.now() - killedAt
  t.equal(next.primary?.node, 'b', 'b is the published primary')
  t.ok(next.epoch > epoch0, `a new epoch (${epoch0} → ${next.epoch})`)
  t.ok(publishedIn <= 3 * timeoutMs, `published ${publishedIn} ms after the kill (≤ 3 × timeoutMs = ${3 * timeoutMs})`)
  const sb = await c.status('b')
  t.equal(sb.role, 'primary', 'b reports primary')
  t.equal(sb.epoch, next.epoch, 'in the published epoch')

  const onB = await c.nbd('b')
  let missing = 0
  for (const i of acked) {
    const got = await onB.read(i * BS, BS)
    if (!got.equals(blockData(i))) missing++
  }
  t.equal(missing, 0, `all ${acked.length} acknowledged writes are on the new primary`)
  await onB.write(0, blockData(999_999))
  t.pass('the new primary accepts a write')
  await onB.close()

  const status = await ctl.get('/v1/status')
  const fo = status.failovers.find((f: any) => f.kind === 'failover' && f.state === 'done')
  t.ok(fo, 'the failover is in the timeline')
  t.same(fo.steps.map((s: any) => s.step), ['detected', 'standby-checked', 'replication-stopped', 'fenced', 'promoted', 'published'], 'in the order of issue 8')
  // alarms are evaluated at each heartbeat: the failover alarm is up within one after the publication
  await waitFor(async () => (await ctl.get('/v1/alarms')).active.some((a: any) => a.kind === 'failover'), 10 * timeoutMs, 'the failover alarm')
  const alarms = await ctl.get('/v1/alarms')
  const all = [...alarms.active, ...alarms.history]
  t.ok(all.some((a: any) => a.kind === 'primary-down' && a.node === 'a'), 'primary-down alarm for a')
  t.ok(alarms.active.some((a: any) => a.kind === 'failover'), 'failover alarm active until a rejoins')

  // the old primary returns with its old config: demoted by the controller, it rejoins as b's standby
  await c.start('a')
  await waitFor(async () => (await c.status('a')).role === 'standby', 15_000, 'a demoted to standby')
  const synced = await c.waitInSync('a', 60_000, 'b')
  const modeA = synced.peers.find(p => p.node === 'a')?.lastMode
  t.not(modeA?.mode, 'FULL', `a caught up without FULL (${modeA?.mode}: ${modeA?.reason})`)
  t.equal(await c.sha('a'), await c.sha('b'), 'a and b byte-identical after the rejoin')
  await waitFor(async () => (await ctl.get('/v1/alarms')).active.length === 0, 10_000, 'every alarm cleared')
  await waitFor(() => countOf(hook.events, 'cleared', 'failover', 'a') === 1, 5000, 'the webhook saw the failover alarm cleared')
  t.equal(countOf(hook.events, 'raised', 'primary-down', 'a'), 1, 'webhook: primary-down raised once')
  t.equal(countOf(hook.events, 'cleared', 'primary-down', 'a'), 1, 'webhook: primary-down cleared once')
  t.equal(countOf(hook.events, 'raised', 'failover', 'a'), 1, 'webhook: failover raised once')
  const finalDoc = await ctl.get('/v1/volumes/vol0')
  t.equal(finalDoc.standbys.find((s: any) => s.node === 'a')?.available, true, 'the document lists a as an available standby')
})
