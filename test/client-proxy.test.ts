import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import net from 'node:net'
import { NbdServer } from '../src/nbd/server.js'
import { CenterClient } from '../src/client/center-client.js'
import { NbdProxy } from '../src/client/nbd-proxy.js'
import { NbdClient } from '../src/client/nbd-client.js'
import { silentLogger, createLogger } from '../src/util/log.js'
import { FileEngine } from './helpers/file-engine.js'
import { FakeCenter } from './helpers/fake-center.js'

const SIZE = 4 * 1024 * 1024

/** A FileEngine whose writes can be held (a primary that stalls). */
class HoldEngine extends FileEngine {
  held: (() => void)[] = []
  holding = false
  override async write(offset: number, data: Buffer, opts: { fua: boolean }): Promise<void> {
    if (this.holding) await new Promise<void>(r => this.held.push(r))
    return super.write(offset, data, opts)
  }
  release(): void {
    this.holding = false
    for (const r of this.held.splice(0)) r()
  }
}

async function node(t: Tap.Test, dir: string, name: string, opts: { readOnly?: boolean; size?: number } = {}) {
  const file = path.join(dir, `${name}.img`)
  fs.writeFileSync(file, Buffer.alloc(opts.size ?? SIZE))
  const engine = new HoldEngine(file, { readOnly: opts.readOnly ?? false })
  const server = new NbdServer({ engine })
  const { port } = await server.listen(0)
  t.teardown(async () => {
    engine.release()
    await server.close()
    engine.close()
  })
  return { engine, file, nbd: `127.0.0.1:${port}`, name }
}

const lines: string[] = []

async function setup(t: Tap.Test) {
  lines.length = 0
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockrep-proxy-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const center = await FakeCenter.start(t)
  const a = await node(t, dir, 'a')
  center.set('vol0', { epoch: 1, primary: { node: 'a', nbd: a.nbd } })
  const proxy = new NbdProxy({
    center: new CenterClient({ urls: [center.url], volume: 'vol0', pollTimeoutMs: 2000 }),
    listen: { host: '127.0.0.1', port: 0 }, noPathRetry: Infinity, retryIntervalMs: 50, maxQueuedBytes: 1 << 20,
    log: createLogger({ level: 'debug', destination: { write: (l: string) => { lines.push(l) } } }),
  })
  const { port } = await proxy.start()
  const client = await NbdClient.connect('127.0.0.1', port)
  t.teardown(async () => {
    // the proxy first: it answers what is still held (ESHUTDOWN), so the client's close does not wait on it
    await proxy.close()
    await client.close().catch(() => {})
  })
  return { dir, center, a, proxy, client }
}

const settled = <T>(p: Promise<T>) => {
  const s = { done: false, err: null as Error | null }
  p.then(() => { s.done = true }, (e: Error) => { s.done = true; s.err = e })
  return s
}
const until = async (cond: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise(r => setTimeout(r, 10))
  }
}

t.test('client-proxy - a write in flight on the old primary when a newer epoch is published is answered by the new primary', async t => {
  const { dir, center, a, proxy, client } = await setup(t)
  const b = await node(t, dir, 'b')
  a.engine.holding = true
  const data = Buffer.alloc(4096, 0x42)
  const w = settled(client.write(8192, data))
  await until(() => a.engine.held.length === 1)
  center.set('vol0', { epoch: 2, primary: { node: 'b', nbd: b.nbd } })
  await until(() => w.done)
  t.equal(w.err, null, 'acknowledged')
  t.equal(a.engine.held.length, 1, 'while the old primary still holds its copy: the answer came from b')
  t.same(fs.readFileSync(b.file).subarray(8192, 8192 + 4096), data, 'the write is on the new primary')
  const st = proxy.status()
  t.equal(st.upstream?.node, 'b')
  t.equal(st.epoch, 2)
  t.equal(st.queue.replayed, 1)
  a.engine.release()
})

t.test('client-proxy - a demoted primary (EPERM) holds writes until the center names a writable one; read-only and wrong-size nodes are skipped', async t => {
  const { dir, center, a, proxy, client } = await setup(t)
  const ro = await node(t, dir, 'ro', { readOnly: true })
  const small = await node(t, dir, 'small', { size: SIZE / 2 })
  const c = await node(t, dir, 'c')
  a.engine.setReadOnly(true)
  const w = settled(client.write(0, Buffer.alloc(4096, 7)))
  await new Promise(r => setTimeout(r, 300))
  t.notOk(w.done, 'EPERM from the demoted node is not passed to the client')
  t.ok(proxy.status().reconnect.pathLosses >= 1, 'the path was dropped')
  center.set('vol0', { epoch: 2, primary: { node: 'ro', nbd: ro.nbd } })
  await new Promise(r => setTimeout(r, 300))
  t.notOk(w.done, 'a read-only export is not a primary')
  center.set('vol0', { epoch: 3, primary: { node: 'small', nbd: small.nbd } })
  await new Promise(r => setTimeout(r, 300))
  t.notOk(w.done, 'an export of another size is not this volume')
  t.ok(proxy.status().reconnect.failures >= 2, `failed connects are counted (${proxy.status().reconnect.failures})`)
  center.set('vol0', { epoch: 4, primary: { node: 'c', nbd: c.nbd } })
  await until(() => w.done).catch(err => {
    console.error(lines.join(''))
    console.error(JSON.stringify(proxy.status(), null, 1))
    throw err
  })
  t.equal(w.err, null)
  t.same(fs.readFileSync(c.file).subarray(0, 4096), Buffer.alloc(4096, 7), 'written on the writable primary of epoch 4')
  t.ok((proxy.status().items.length === 0))
})

t.test('client-proxy - a document with no primary holds requests; reads, flushes and zeroes flow once one is named', async t => {
  const { dir, center, proxy, client } = await setup(t)
  const b = await node(t, dir, 'b')
  fs.writeFileSync(b.file, Buffer.alloc(SIZE, 9))
  center.set('vol0', { epoch: 2, primary: null })
  await until(() => proxy.status().upstream === null)
  const r = client.read(0, 4096)
  const z = client.writeZeroes(4096, 8192)
  const f = client.flush()
  await new Promise(r => setTimeout(r, 200))
  const st = proxy.status()
  // the flush waits in the NBD session for the write-zeroes before it, as it must
  t.equal(st.queue.waiting, 2, 'the read and the write-zeroes wait')
  t.same(st.items.map(i => i.kind), ['read', 'writeZeroes'], 'in order')
  center.set('vol0', { epoch: 3, primary: { node: 'b', nbd: b.nbd } })
  t.same(await r, Buffer.alloc(4096, 9), 'the read is answered by the new primary')
  await z
  await f
  t.same(fs.readFileSync(b.file).subarray(4096, 12288), Buffer.alloc(8192), 'zeroes written')
  t.ok(b.engine.flushes >= 1, 'flush reached the new primary')
})

t.test('client-proxy - a document that changes while the proxy is still connecting to the previous primary is followed (regression)', async t => {
  const { dir, center, proxy, client } = await setup(t)
  const b = await node(t, dir, 'b')
  const c = await node(t, dir, 'c')
  // b answers only after 400 ms: the proxy is mid-connect when epoch 3 names c
  const slow = net.createServer(down => {
    const up = net.connect(Number(b.nbd.split(':')[1]), '127.0.0.1')
    down.pause()
    up.pause()
    setTimeout(() => {
      down.pipe(up)
      up.pipe(down)
    }, 400)
    for (const s of [down, up]) s.on('error', () => {}).on('close', () => { down.destroy(); up.destroy() })
  })
  await new Promise<void>(r => slow.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => slow.close())
  center.set('vol0', { epoch: 2, primary: { node: 'b', nbd: `127.0.0.1:${(slow.address() as net.AddressInfo).port}` } })
  await until(() => proxy.status().epoch === 2 && proxy.status().reconnect.attempts >= 2)
  center.set('vol0', { epoch: 3, primary: { node: 'c', nbd: c.nbd } })
  const w = settled(client.write(0, Buffer.alloc(4096, 3)))
  await until(() => w.done, 5000).catch(err => {
    console.error(lines.join(''))
    throw err
  })
  t.equal(w.err, null, 'the write is answered by the primary of epoch 3')
  t.same(fs.readFileSync(c.file).subarray(0, 4096), Buffer.alloc(4096, 3))
  t.equal(proxy.status().upstream?.node, 'c')
})
