import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { have, skipUnless } from './helpers/tools.js'
import { Cluster, waitFor } from './helpers/cluster.js'
import { FakeCenter } from './helpers/fake-center.js'
import { startProxy, startAgent, startAll } from './helpers/nbd-proxy.js'
import { NbdClient } from '../src/client/nbd-client.js'

const pexec = promisify(execFile)
const MiB = 1024 * 1024

async function single(t: Tap.Test) {
  const c = await Cluster.create(t, { nodes: ['a'], size: 16 * MiB, journalSize: 8 * MiB })
  await c.initAll()
  await startAll(c)
  const center = await FakeCenter.start(t)
  center.set('vol0', { epoch: 1, primary: { node: 'a', nbd: `127.0.0.1:${c.node('a').nbdPort}` } })
  return { c, center }
}

/** Time from `start` until `p` settles, and how it settled. */
async function timed(p: Promise<unknown>, start: number): Promise<{ ms: number; err: (Error & { errno?: number }) | null }> {
  try {
    await p
    return { ms: Date.now() - start, err: null }
  } catch (err) {
    return { ms: Date.now() - start, err: err as Error & { errno?: number } }
  }
}

t.test('nbd-proxy bounds - with no primary: EIO after noPathRetry × interval, at once with "fail", back-pressure past --max-queued-bytes; all resumes when the primary returns', async t => {
  const { c, center } = await single(t)
  const start = (name: string, args: string[]) => startProxy(t, { center: center.url, volume: 'vol0', log: join(c.dir, `proxy-${name}.log`), args })
  const [retry, fail, bp] = await Promise.all([
    start('retry', ['--retry-interval-ms', '250', '--no-path-retry', '4']),
    start('fail', ['--retry-interval-ms', '250', '--no-path-retry', 'fail']),
    start('bp', ['--retry-interval-ms', '200', '--queue-if-no-path', '--max-queued-bytes', '1M']),
  ])
  const [cr, cf, cb] = await Promise.all([retry, fail, bp].map(p => NbdClient.connect('127.0.0.1', p.nbdPort)))
  t.teardown(() => Promise.all([cr, cf, cb].map(x => x?.close().catch(() => {}))))
  await cr!.write(0, Buffer.alloc(4096, 1))
  await cf!.write(4096, Buffer.alloc(4096, 2))

  await c.kill('a', 'SIGKILL')
  const killed = Date.now()
  // wait until the proxies noticed the dead connection, then time a request from there
  await waitFor(async () => (await Promise.all([retry, fail, bp].map(p => p.status()))).every(s => s.upstream?.connected === false), 10_000, 'proxies see the primary gone')
  const lostFor = (await retry.status()).queue.noPathForMs ?? 0
  const t0 = Date.now()
  // the back-pressure client sends 64 × 64 KiB at once, far past the proxy's 1 MiB
  const n = 64
  const size = 64 * 1024
  const base = 8 * MiB
  const bpWrites = Array.from({ length: n }, (_, i) => cb!.write(base + i * size, Buffer.alloc(size, i + 1)))
  const [r, f] = await Promise.all([timed(cr!.write(0, Buffer.alloc(4096, 3)), t0), timed(cf!.write(4096, Buffer.alloc(4096, 4)), t0)])
  const bound = 4 * 250
  t.equal(r.err?.errno, 5, `no-path-retry 4 × 250 ms: the write fails with EIO (after ${r.ms} ms, ${Math.round(lostFor + r.ms)} ms after the loss)`)
  t.ok(lostFor + r.ms >= bound - 50, `not before the bound of ${bound} ms`)
  t.ok(lostFor + r.ms <= bound + 1500, 'and not long after it')
  t.equal(f.err?.errno, 5, `no-path-retry fail: EIO at once (${f.ms} ms)`)
  t.ok(f.ms < r.ms, `without waiting out a bound: answered before the retrying proxy's EIO (${f.ms} < ${r.ms} ms; one loopback round trip, slow only on a loaded machine)`)
  t.comment(`measured: kill → EIO ${Date.now() - killed} ms; bound ${bound} ms; fail mode ${f.ms} ms`)

  // a real client sees the error too
  const io = await pexec('qemu-io', ['-f', 'raw', retry.url, '-c', 'write -P 7 0 4k']).then(r => r.stdout + r.stderr, (e: { stdout: string; stderr: string }) => e.stdout + e.stderr)
  t.match(io, /Input\/output error/, 'qemu-io through the proxy gets EIO once the bound has run out')
  const rs = await retry.status()
  t.equal(rs.queue.failing, true)
  t.ok(rs.queue.failedNoPath >= 1)
  t.match(retry.logText(), /no primary within the bound/, 'the log says why')

  const bs = await bp.status()
  t.comment(`back-pressure: held ${bs.queue.items} requests, ${bs.queue.bytes} bytes, of ${n} × ${size} sent by the client`)
  t.equal(bs.queue.overLimit, true, 'the queue is at its limit')
  t.ok(bs.queue.bytes >= MiB && bs.queue.bytes <= MiB + 256 * 1024, `queued bytes stay near the limit (${bs.queue.bytes})`)
  t.ok(bs.queue.items < n, 'the proxy did not take every request in: the client is back-pressured')
  t.equal(bs.queue.failedNoPath, 0, 'queue-if-no-path: nothing failed')
  t.match(bp.logText(), /not reading from clients/, 'the log shows the back-pressure')

  // the primary comes back
  await startAgent(c, 'a')
  await waitFor(async () => (await retry.status()).upstream?.connected === true, 15_000, 'the proxy reconnects')
  await cr!.write(0, Buffer.alloc(4096, 5))
  t.same(await cr!.read(0, 4096), Buffer.alloc(4096, 5), 'writes succeed again once a primary answers')
  t.equal((await retry.status()).queue.failing, false)
  const done = await Promise.allSettled(bpWrites)
  t.equal(done.filter(d => d.status === 'rejected').length, 0, 'every back-pressured write completes once the primary is back')
  const direct = await NbdClient.connect('127.0.0.1', c.node('a').nbdPort)
  let same = 0
  for (let i = 0; i < n; i++) if ((await direct.read(base + i * size, size)).equals(Buffer.alloc(size, i + 1))) same++
  await direct.close()
  t.equal(same, n, 'and each is on the primary')
}, { skip: skipUnless(have('qemu-io'), 'qemu-io') })
