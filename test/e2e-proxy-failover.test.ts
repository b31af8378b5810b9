import t from 'tap'
import { join } from 'node:path'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { Cluster, waitFor } from './helpers/cluster.js'
import { FakeCenter } from './helpers/fake-center.js'
import { startProxy, startAll } from './helpers/nbd-proxy.js'
import type { ProxyProcess } from './helpers/nbd-proxy.js'
import { NbdClient } from '../src/client/nbd-client.js'

const MiB = 1024 * 1024
const BS = 4096

interface WriterResult {
  /** block → counter of its last acknowledged write */
  model: Map<number, number>
  errors: string[]
  acked: number
  /** the longest time the client waited between two acknowledgements */
  maxGapMs: number
  /** the last write number given out (numbers only grow, across writers sharing this result) */
  counter: number
}

/**
 * Writes 4 KiB blocks at seeded random places through `client`, `depth` in
 * flight, never two in flight on one block (so the acknowledgement order is
 * the write order); records every acknowledged write in the model.
 */
function writer(client: NbdClient, blocks: number, depth: number, seed: number, res: WriterResult = { model: new Map(), errors: [], acked: 0, maxGapMs: 0, counter: 0 }) {
  let x = seed >>> 0 || 1
  const rnd = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) / 4294967296)
  let lastAck = Date.now()
  const busy = new Set<number>()
  let stopping = false
  const one = async (): Promise<void> => {
    while (!stopping) {
      let b = Math.floor(rnd() * blocks)
      while (busy.has(b)) b = (b + 1) % blocks
      busy.add(b)
      const n = ++res.counter
      const data = Buffer.alloc(BS, n & 0xff)
      data.writeUInt32BE(b, 0)
      data.writeUInt32BE(n, 4)
      try {
        await client.write(b * BS, data)
        res.model.set(b, n)
        res.acked++
        const now = Date.now()
        res.maxGapMs = Math.max(res.maxGapMs, now - lastAck)
        lastAck = now
      } catch (err) {
        res.errors.push(`block ${b} write ${n}: ${(err as Error).message}`)
      } finally {
        busy.delete(b)
      }
    }
  }
  const loops = Array.from({ length: depth }, () => one())
  return {
    res,
    stop: async () => {
      stopping = true
      await Promise.all(loops)
      return res
    },
  }
}

/** Every acknowledged write is what `node` holds for its block (read directly from its export). */
async function checkModel(t: Tap.Test, c: Cluster, node: string, res: WriterResult, via?: ProxyProcess): Promise<void> {
  const direct = await NbdClient.connect('127.0.0.1', c.node(node).nbdPort)
  const proxied = via === undefined ? null : await NbdClient.connect('127.0.0.1', via.nbdPort)
  const lost: string[] = []
  for (const [b, n] of res.model) {
    const got = await direct.read(b * BS, BS)
    const expect = Buffer.alloc(BS, n & 0xff)
    expect.writeUInt32BE(b, 0)
    expect.writeUInt32BE(n, 4)
    if (!got.equals(expect)) lost.push(`block ${b}: want write ${n}, ${node} has write ${got.readUInt32BE(4)}`)
    if (proxied !== null && !(await proxied.read(b * BS, BS)).equals(expect)) lost.push(`block ${b}: read through the proxy differs`)
  }
  await direct.close()
  await proxied?.close()
  t.same(lost.slice(0, 10), [], `every one of ${res.model.size} acknowledged blocks (${res.acked} writes) is on ${node}${via ? ', and reads through the proxy return it' : ''}`)
}

async function setup(t: Tap.Test) {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 16 * MiB, journalSize: 8 * MiB, protocol: 'sync' })
  await c.initAll()
  await startAll(c)
  await c.waitInSync('b')
  const center = await FakeCenter.start(t)
  const nbd = (id: string) => `127.0.0.1:${c.node(id).nbdPort}`
  center.set('vol0', { epoch: 1, primary: { node: 'a', nbd: nbd('a') }, standbys: [{ node: 'b', nbd: nbd('b') }] })
  const proxy = await startProxy(t, { center: center.url, volume: 'vol0', log: join(c.dir, 'proxy.log'),
    args: ['--retry-interval-ms', '200', '--no-path-retry', '100'] })
  const client = await NbdClient.connect('127.0.0.1', proxy.nbdPort)
  t.teardown(() => client.close().catch(() => {}))
  return { c, center, proxy, client, nbd }
}

/** A TCP relay to `port` whose connections the test can cut (both directions reset at once). */
async function relay(t: Tap.Test, port: number) {
  const socks = new Set<net.Socket>()
  const server = net.createServer(down => {
    const up = net.connect(port, '127.0.0.1')
    for (const s of [down, up]) {
      socks.add(s)
      s.on('error', () => {})
      s.on('close', () => {
        socks.delete(s)
        down.destroy()
        up.destroy()
      })
    }
    down.pipe(up)
    up.pipe(down)
  })
  await new Promise<void>(r => server.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => {
    for (const s of socks) s.destroy()
    server.close()
  })
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    cut: () => {
      for (const s of socks) s.resetAndDestroy()
    },
  }
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

t.test('nbd-proxy failover - a client writing in a loop through the proxy sees no error and loses no acknowledged write across cut connections, a switchover and a kill -9', async t => {
  const { c, center, proxy, client, nbd } = await setup(t)

  // 1. the proxy reaches a through a relay whose connections are cut (TCP reset) three times
  const r = await relay(t, c.node('a').nbdPort)
  center.set('vol0', { epoch: 1, primary: { node: 'a', nbd: r.address } })
  await waitFor(async () => (await proxy.status()).upstream?.nbd === r.address, 10_000, 'proxy follows the relay')
  let w = writer(client, 2048, 8, 0x5eed)
  await sleep(500)
  for (let i = 0; i < 3; i++) {
    const acked = w.res.acked
    r.cut()
    await waitFor(() => w.res.acked > acked + 20, 15_000, 'writes continue after the cut')
  }
  const afterCuts = await proxy.status()
  t.ok(afterCuts.reconnect.pathLosses >= 3, `three connection losses seen (${afterCuts.reconnect.pathLosses})`)
  t.ok(afterCuts.queue.totalRetries > 0, `in-flight requests were retried on the same primary (${afterCuts.queue.totalRetries})`)
  t.same(w.res.errors, [], 'no client error across the cuts')

  // 2. switchover: demote a (its writes now fail EPERM: held), promote b, publish epoch 2
  const before = w.res.acked
  await c.admin('a', 'POST', '/demote', {})
  await sleep(400)
  const queued = await proxy.status()
  const p2 = (await c.admin('b', 'POST', '/promote', { force: false })) as { epoch: number }
  t.equal(p2.epoch, 2)
  center.set('vol0', { epoch: p2.epoch, primary: { node: 'b', nbd: nbd('b') }, standbys: [{ node: 'a', nbd: nbd('a') }] })
  await sleep(1000)
  let res = await w.stop()
  t.same(res.errors, [], 'no client error across the switchover')
  t.ok(before > 0 && res.acked > before, `writes before (${before}) and after (${res.acked - before}) the switchover`)
  t.ok(queued.queue.items > 0 || queued.queue.totalRetries > afterCuts.queue.totalRetries, `requests were held while a was demoted (${queued.queue.items} held)`)
  let st = await proxy.status()
  t.equal(st.epoch, 2, 'the proxy follows epoch 2')
  t.equal(st.upstream?.node, 'b')
  t.equal(st.queue.items, 0)
  t.ok(st.queue.replayed > 0, `requests were replayed (${st.queue.replayed}; ${st.queue.totalRetries} retries in all)`)
  t.match(proxy.logText(), /requests queued/, 'the log shows the queued requests')
  t.match(proxy.logText(), /"retries":1/, 'with their retry counts')
  t.comment(`measured: longest client-visible stall ${res.maxGapMs} ms (cuts, then demote + 400 ms + promote + publish)`)
  await checkModel(t, c, 'b', res, proxy)

  // 3. a rejoins as b's standby; under the write loop b is killed (-9), a promoted, epoch 3 published
  await c.waitInSync('a', 60_000, 'b')
  res.maxGapMs = 0
  w = writer(client, 2048, 8, 0xfa11, res)
  await sleep(800)
  await c.kill('b', 'SIGKILL')
  const ackedAtKill = w.res.acked
  await sleep(500)
  const held = await proxy.status()
  t.equal(held.upstream?.connected, false, 'no upstream while b is dead')
  t.ok(held.queue.waiting > 0, `requests wait in the queue (${held.queue.waiting}, oldest ${Math.round(held.queue.oldestAgeMs ?? 0)} ms, max retries ${held.queue.maxRetries})`)
  t.ok(w.res.acked - ackedAtKill <= 8, 'nothing is acknowledged while no primary is up (beyond replies already on the wire)')
  const p3 = (await c.admin('a', 'POST', '/promote', { force: false })) as { epoch: number }
  t.equal(p3.epoch, 3)
  const acksBeforePublish = w.res.acked
  const publishedAt = Date.now()
  center.set('vol0', { epoch: p3.epoch, primary: { node: 'a', nbd: nbd('a') }, standbys: [] })
  await waitFor(() => w.res.acked > acksBeforePublish, 15_000, 'first write on a')
  t.comment(`measured: published → first acknowledged write through the proxy ${Date.now() - publishedAt} ms`)
  await sleep(1000)
  res = await w.stop()
  t.same(res.errors, [], 'no client error across the kill -9')
  t.ok(res.acked > ackedAtKill + 50, `writes continue on a (${res.acked - ackedAtKill} after the kill)`)
  st = await proxy.status()
  t.equal(st.upstream?.node, 'a')
  t.equal(st.epoch, 3)
  t.ok(st.reconnect.failures > 0, `the proxy retried the dead primary (${st.reconnect.failures} failed connects)`)
  t.comment(`measured: longest client-visible stall ${res.maxGapMs} ms (kill -9 + 500 ms + promote + publish)`)
  await checkModel(t, c, 'a', res, proxy)
})
