import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { have, skipUnless } from './helpers/tools.js'
import { Cluster, sha256File } from './helpers/cluster.js'
import { main } from '../src/cli/main.js'
import { parseNoPathRetry } from '../src/cli/cmd-nbd-proxy.js'
import { FakeCenter } from './helpers/fake-center.js'
import { startProxy, startAll } from './helpers/nbd-proxy.js'
import { NbdClient } from '../src/client/nbd-client.js'

const pexec = promisify(execFile)
const MiB = 1024 * 1024
const missing = ['qemu-io', 'qemu-img', 'nbdinfo', 'nbdcopy'].filter(b => !have(b))
const skip = skipUnless(missing.length === 0, `${missing.join(', ')} (apt-get install qemu-utils libnbd-bin)`)

t.test('nbd-proxy - real clients through the proxy see the primary: size, flags, read/write, byte-identical', { skip }, async t => {
  const size = 16 * MiB
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size, journalSize: 8 * MiB })
  await c.initAll()
  await startAll(c)
  await c.waitInSync('b')
  const center = await FakeCenter.start(t)
  center.set('vol0', { epoch: 1, primary: { node: 'a', nbd: `127.0.0.1:${c.node('a').nbdPort}` }, standbys: [{ node: 'b', nbd: `127.0.0.1:${c.node('b').nbdPort}` }] })
  const proxy = await startProxy(t, { center: center.url, volume: 'vol0', log: join(c.dir, 'proxy.log') })

  const info = JSON.parse((await pexec('nbdinfo', ['--json', proxy.url])).stdout)
  const exp = info.exports[0]
  t.equal(exp['export-size'], size, 'nbdinfo: the size of the volume')
  t.equal(exp['is_read_only'], false, 'nbdinfo: writable')
  for (const f of ['can_flush', 'can_fua', 'can_trim', 'can_zero']) t.equal(exp[f], true, `nbdinfo: ${f}`)

  const dir = t.testdir()
  const src = join(dir, 'src.img')
  writeFileSync(src, randomBytes(size))
  await pexec('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, proxy.url], { timeout: 120_000 })
  const io = await pexec('qemu-io', ['-f', 'raw', proxy.url,
    '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M',
    '-c', 'write -P 0x5c 1234567 70000', '-c', 'read -P 0x5c 1234567 70000',
    '-c', 'write -f -P 0x11 4M 64k', '-c', 'flush',
    '-c', 'write -z 8M 2M', '-c', 'read -P 0 8M 2M', '-c', 'discard 12M 1M'], { timeout: 60_000 })
  t.notMatch(io.stdout + io.stderr, /Pattern verification failed|error/i, 'qemu-io through the proxy reads back every pattern it wrote')
  await c.waitInSync('b')
  const out = join(dir, 'out.img')
  await pexec('nbdcopy', [proxy.url, out], { timeout: 120_000 })
  t.equal(await sha256File(out), await c.sha('a'), 'nbdcopy out through the proxy is byte-identical to the primary')
  t.equal(await c.sha('b'), await c.sha('a'), 'and the standby matches')

  // an NbdClient with many requests in flight, and an out-of-range request
  const client = await NbdClient.connect('127.0.0.1', proxy.nbdPort)
  t.teardown(() => client.close())
  const writes = Array.from({ length: 32 }, (_, i) => client.write(i * 65536, Buffer.alloc(65536, i)))
  await Promise.all(writes)
  const back = await Promise.all(Array.from({ length: 32 }, (_, i) => client.read(i * 65536, 65536)))
  t.ok(back.every((b, i) => b.equals(Buffer.alloc(65536, i))), '32 concurrent writes read back')
  await t.rejects(client.read(size, 4096), { errno: 22 }, 'a read past the end is EINVAL, passed through')
  const st = await proxy.status()
  t.equal(st.upstream?.node, 'a')
  t.equal(st.upstream?.connected, true)
  t.equal(st.epoch, 1)
  t.equal(st.queue.items, 0, 'nothing held once answered')
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text()
  t.match(metrics, /blockrep_proxy_upstream_connected 1/, 'metrics')
  t.equal(await proxy.stop(), 0, 'SIGTERM stops the proxy cleanly')
})

t.test('nbd-proxy - bad flags are usage errors naming the flag', async t => {
  const bad = async (args: string[], re: RegExp) => {
    let err = ''
    const code = await main(['node', 'blockrep', 'nbd-proxy', ...args], { out: () => {}, err: s => { err += s } })
    t.equal(code, 2, `exit 2 for ${args.join(' ')}`)
    t.match(err, re)
  }
  await bad(['--center', 'x:1', '--volume', 'v', '--listen', 'nope'], /--listen: expected HOST:PORT/)
  await bad(['--center', 'x:1', '--volume', 'v', '--listen', '127.0.0.1:0', '--no-path-retry', 'abc'], /--no-path-retry/)
  await bad(['--center', 'x:1', '--volume', 'v', '--listen', '127.0.0.1:0', '--retry-interval-ms', '0'], /--retry-interval-ms/)
  await bad(['--center', 'x:1', '--volume', 'v', '--listen', '127.0.0.1:0', '--max-queued-bytes', 'lots'], /--max-queued-bytes/)
  await bad(['--center', 'http://[x', '--volume', 'v', '--listen', '127.0.0.1:0'], /center URL/)
  await bad(['--volume', 'v', '--listen', '127.0.0.1:0'], /--center/)
  t.equal(parseNoPathRetry(true, false), 60, 'default')
  t.equal(parseNoPathRetry('queue', false), Infinity)
  t.equal(parseNoPathRetry('fail', false), 0)
  t.equal(parseNoPathRetry('7', true), Infinity, '--queue-if-no-path wins')
})
