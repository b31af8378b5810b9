import t from 'tap'
import { Cluster, waitFor } from './helpers/cluster.js'
import { ControllerProc } from './helpers/controller-proc.js'
import { webhookServer } from './helpers/webhook.js'
import type { WebhookEvent } from './helpers/webhook.js'

const MiB = 1024 * 1024

function count(events: WebhookEvent[], type: string, kind: string, who: string): number {
  return events.filter(e => e.event === type && e.alarm.kind === kind && (e.alarm.node === who || e.alarm.site === who)).length
}

t.test('controller - site health by ratio, alarms raised once and cleared (at /v1/alarms and by the webhook)', async (t) => {
  // west holds three nodes: at threshold 0.5 losing one leaves 2/3 (> 0.5, available), losing two leaves 1/3 (unavailable)
  const t0 = Date.now()
  const lap = (what: string) => t.comment(`${what} at ${Date.now() - t0} ms`)
  const c = await Cluster.create(t, { nodes: ['a', 'b', 'c', 'd'], size: 4 * MiB, journalSize: 2 * MiB, protocol: 'async' })
  await c.initAll()
  lap('init')
  await c.startAll()
  lap('started')
  const hook = await webhookServer(t)
  const ctl = await ControllerProc.create(t, c, { a: 'east', b: 'west', c: 'west', d: 'west' }, { alarm: hook.url, siteThreshold: 0.5 })
  await ctl.start()
  await waitFor(async () => (await ctl.get('/v1/volumes/vol0').catch(() => null)) !== null, 10_000, 'the first document')
  const west = async () => (await ctl.get('/v1/status')).sites.find((s: any) => s.site === 'west')
  await waitFor(async () => (await west()).up === 3, 10_000, 'all of west answering')

  lap('controller up')
  await c.kill('d')
  await waitFor(async () => (await ctl.get('/v1/alarms')).active.some((a: any) => a.kind === 'standby-down' && a.node === 'd'), 10_000, 'standby-down for d')
  const w1 = await west()
  t.match(w1, { up: 2, total: 3, available: true }, 'west with 2 of 3 nodes is available at 0.5')
  t.notOk((await ctl.get('/v1/alarms')).active.some((a: any) => a.kind === 'site-down'), 'no site-down alarm')

  await c.kill('c')
  await waitFor(async () => (await ctl.get('/v1/alarms')).active.some((a: any) => a.kind === 'site-down' && a.site === 'west'), 10_000, 'site-down for west')
  const w2 = await west()
  t.match(w2, { up: 1, total: 3, available: false }, 'west with 1 of 3 nodes is unavailable at 0.5')
  // several evaluations pass with the conditions holding: still one alarm each
  await new Promise(r => setTimeout(r, 1000))
  const active = (await ctl.get('/v1/alarms')).active
  t.equal(active.filter((a: any) => a.kind === 'site-down').length, 1, 'one site-down alarm')
  t.equal(active.filter((a: any) => a.kind === 'standby-down').length, 2, 'one standby-down alarm per node')
  t.equal((await ctl.get('/v1/volumes/vol0')).primary.node, 'a', 'the primary (east) is untouched')

  lap('site down seen')
  await c.start('c')
  await c.start('d')
  lap('restarted')
  await waitFor(async () => (await ctl.get('/v1/alarms')).active.length === 0, 15_000, 'every alarm cleared')
  const history = (await ctl.get('/v1/alarms')).history
  const siteAlarm = history.find((a: any) => a.kind === 'site-down' && a.site === 'west')
  t.ok(siteAlarm && siteAlarm.clearedAt > siteAlarm.raisedAt, 'the site-down alarm has raise and clear times')
  await waitFor(() => count(hook.events, 'cleared', 'site-down', 'west') === 1 && count(hook.events, 'cleared', 'standby-down', 'c') === 1 && count(hook.events, 'cleared', 'standby-down', 'd') === 1, 5000, 'webhook clears')
  for (const [kind, who] of [['standby-down', 'd'], ['standby-down', 'c'], ['site-down', 'west']]) {
    t.equal(count(hook.events, 'raised', kind as string, who as string), 1, `webhook: ${kind} ${who} raised once`)
    t.equal(count(hook.events, 'cleared', kind as string, who as string), 1, `webhook: ${kind} ${who} cleared once`)
  }
  t.equal(count(hook.events, 'raised', 'primary-down', 'a'), 0, 'no primary alarm')
})
