import t from 'tap'
import { CenterClient } from '../src/client/center-client.js'
import type { VolumeDocument } from '../src/client/volume-document.js'
import { parseVolumeDocument } from '../src/client/volume-document.js'
import { FakeCenter } from './helpers/fake-center.js'
import { freePorts } from './helpers/cluster.js'

const primary = (node: string, port: number) => ({ node, nbd: `127.0.0.1:${port}` })

async function waitFor(cond: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(r => setTimeout(r, 10))
  }
}

for (const transport of ['poll', 'sse'] as const) {
  t.test(`client-center - ${transport}: watch delivers the current document, then every change in order with its epoch`, async t => {
    const center = await FakeCenter.start(t)
    center.set('vol0', { epoch: 1, primary: primary('a', 1001) })
    const client = new CenterClient({ urls: [center.url], volume: 'vol0', transport, pollTimeoutMs: 2000 })
    const seen: VolumeDocument[] = []
    const h = client.watch(doc => seen.push(doc))
    t.teardown(() => h.stop())
    await waitFor(() => seen.length === 1, 10_000, 'first document')
    t.equal(seen[0]?.primary?.node, 'a')
    // two quick changes, then a promotion
    center.set('vol0', { standbys: [{ node: 'b', nbd: '127.0.0.1:1002', consistent: true }] })
    await waitFor(() => seen.length === 2, 10_000, 'standby change')
    center.set('vol0', { epoch: 2, primary: primary('b', 1002), standbys: [] })
    await waitFor(() => seen.length === 3, 10_000, 'promotion')
    t.same(seen.map(d => [d.epoch, d.revision, d.primary?.node]), [[1, 1, 'a'], [1, 2, 'a'], [2, 3, 'b']], 'in order, each with its epoch')
    // a stale document of a lower epoch (a center behind the others) is never delivered
    center.publish({ volume: 'vol0', epoch: 1, revision: 9, primary: primary('a', 1001), standbys: [], updatedAt: Date.now() })
    await new Promise(r => setTimeout(r, 300))
    center.set('vol0', { epoch: 3, primary: primary('c', 1003) })
    await waitFor(() => seen.length === 4, 10_000, 'epoch 3')
    t.same(seen.map(d => d.epoch), [1, 1, 2, 3], 'the lower epoch was ignored')
    t.equal(h.current?.primary?.node, 'c')
    if (transport === 'poll') t.ok(center.requests.some(r => /since=\d+&timeoutMs=2000/.test(r)), 'long-polls with ?since=revision')
  })
}

t.test('client-center - several centers are tried in turn; the watch survives a center restart', async t => {
  const [deadPort] = await freePorts(1)
  const center = await FakeCenter.start(t)
  center.set('vol0', { epoch: 4, primary: primary('a', 1001) })
  const client = new CenterClient({ urls: [`127.0.0.1:${deadPort}`, center.url], volume: 'vol0', pollTimeoutMs: 1000, minBackoffMs: 20, maxBackoffMs: 200 })
  const doc = await client.get()
  t.equal(doc.epoch, 4, 'get() skips the dead center')
  t.equal(client.currentUrl, center.url, 'and remembers the one that answered')

  const seen: VolumeDocument[] = []
  const h = client.watch(d => seen.push(d))
  t.teardown(() => h.stop())
  await waitFor(() => seen.length === 1)
  const port = center.port
  await center.close()
  await new Promise(r => setTimeout(r, 300))
  await center.listen(port)
  center.set('vol0', { epoch: 5, primary: primary('b', 1002) })
  await waitFor(() => seen.length === 2, 15_000, 'the change after the restart')
  t.same(seen.map(d => d.epoch), [4, 5], 'the change made while reconnecting arrives')
})

t.test('client-center - errors name what is wrong', async t => {
  const center = await FakeCenter.start(t)
  const client = new CenterClient({ urls: [center.url], volume: 'nope' })
  await t.rejects(client.get(), { code: 'ERR_CONFIG', message: /does not know volume nope/ })
  const [deadPort] = await freePorts(1)
  const dead = new CenterClient({ urls: [`127.0.0.1:${deadPort}`], volume: 'v', requestTimeoutMs: 1000 })
  await t.rejects(dead.get(), { code: 'ERR_CENTER_UNAVAILABLE' })
  center.set('v', { epoch: 1 })
  center.failWith = 503
  await t.rejects(new CenterClient({ urls: [center.url], volume: 'v' }).get(), { code: 'ERR_CENTER_UNAVAILABLE', message: /HTTP 503/ })
  t.throws(() => new CenterClient({ urls: [], volume: 'v' }), { code: 'ERR_USAGE' })
  t.throws(() => new CenterClient({ urls: ['http://[bad'], volume: 'v' }), { code: 'ERR_USAGE' })
  t.throws(() => parseVolumeDocument({ volume: 'v', epoch: -1, revision: 1, primary: null }), { code: 'ERR_PROTOCOL', message: /epoch/ })
  t.throws(() => parseVolumeDocument({ volume: 'v', epoch: 1, revision: 1, primary: { node: 'a' } }), { code: 'ERR_PROTOCOL', message: /primary\.nbd/ })
  t.throws(() => parseVolumeDocument({ volume: 'w', epoch: 1, revision: 1, primary: null }, 'v'), { code: 'ERR_PROTOCOL', message: /volume/ })
})

t.test('client-center - changes() iterates every change in order', async t => {
  const center = await FakeCenter.start(t)
  center.set('v', { epoch: 1, primary: primary('a', 1) })
  const client = new CenterClient({ urls: [center.url], volume: 'v', pollTimeoutMs: 1000 })
  const abort = new AbortController()
  const got: number[] = []
  const loop = (async () => {
    for await (const d of client.changes(abort.signal)) {
      got.push(d.epoch)
      if (d.epoch === 1) center.set('v', { epoch: 2, primary: primary('b', 2) })
      if (d.epoch === 2) abort.abort()
    }
  })()
  await loop
  t.same(got, [1, 2])
})
