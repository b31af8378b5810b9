import t from 'tap'
import { spawn } from 'node:child_process'
import { Cluster, CLI, waitFor } from './helpers/cluster.js'
import { ControllerProc } from './helpers/controller-proc.js'

const MiB = 1024 * 1024

/** Reads an SSE stream, collecting the `event: volume` documents. */
function sse(url: string, docs: any[]): AbortController {
  const ac = new AbortController()
  void (async () => {
    try {
      const res = await fetch(url, { signal: ac.signal })
      let buf = ''
      for await (const chunk of res.body as any) {
        buf += Buffer.from(chunk).toString('utf8')
        let i: number
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i)
          buf = buf.slice(i + 2)
          const data = block.split('\n').find(l => l.startsWith('data: '))
          if (block.includes('event: volume') && data) docs.push(JSON.parse(data.slice(6)))
        }
      }
    } catch {
      // aborted
    }
  })()
  return ac
}

t.test('controller - configuration center API: long-poll, SSE in order, switchover with a token, restart without failover, one controller per store', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 4 * MiB, journalSize: 2 * MiB, protocol: 'sync' })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  const ctl = await ControllerProc.create(t, c, { a: 'east', b: 'west' })
  await ctl.start()
  let doc: any = null
  // the first document may be published before b answered; wait until it shows b available and consistent
  await waitFor(async () => (doc = await ctl.get('/v1/volumes/vol0').catch(() => null)) !== null && doc.standbys[0]?.available === true && doc.standbys[0]?.consistent === true, 10_000, 'a settled document')
  t.match(doc, { volume: 'vol0', primary: { node: 'a', site: 'east', nbd: `127.0.0.1:${c.node('a').nbdPort}`, admin: `127.0.0.1:${c.node('a').adminPort}` } })
  t.same((await ctl.get('/v1/volumes')).volumes.map((d: any) => d.volume), ['vol0'])
  const unknown = await fetch(`${ctl.url}/v1/volumes/nope`)
  t.equal(unknown.status, 404, 'an unknown volume is 404')
  t.match(await unknown.json(), { error: { code: 'ERR_USAGE', message: /no volume "nope"/ } })
  const bad = await fetch(`${ctl.url}/v1/volumes/vol0?after=x`)
  t.equal(bad.status, 400, 'a bad parameter is 400')

  const t0 = Date.now()
  const idle = await ctl.get(`/v1/volumes/vol0?since=${doc.revision}&timeoutMs=600`)
  t.ok(Date.now() - t0 >= 500, 'a long-poll with nothing new waits for its timeout')
  t.equal(idle.revision, doc.revision, 'then answers with the current document')

  const events: any[] = []
  const stream = sse(`${ctl.url}/v1/volumes/vol0/events`, events)
  t.teardown(() => stream.abort())
  await waitFor(() => events.length >= 1, 5000, 'the SSE stream sends the current document')
  const waiting = ctl.get(`/v1/volumes/vol0?after=${doc.epoch}&timeoutMs=20000`)

  t.equal((await ctl.post('/v1/volumes/vol0/switchover', { to: 'b' }, null)).status, 401, 'switchover without a token: 401')
  t.equal((await ctl.post('/v1/volumes/vol0/switchover', { to: 'b' }, 'wrong')).status, 401, 'with a wrong token: 401')
  t.equal((await ctl.post('/v1/volumes/vol0/switchover', { to: 'zz' })).status, 400, 'to an unknown node: 400')
  const sw = await ctl.post('/v1/volumes/vol0/switchover', { to: 'b' })
  t.equal(sw.status, 200, `switchover: ${JSON.stringify(sw.body).slice(0, 200)}`)
  t.equal(sw.body.primary.node, 'b')
  const after = await waiting
  t.equal(after.primary.node, 'b', 'the ?after long-poll returns the switched document')
  t.ok(after.epoch > doc.epoch)
  t.equal((await c.status('a')).role, 'standby', 'a was demoted')
  t.equal((await c.status('b')).role, 'primary', 'b is primary')
  await waitFor(() => events.some(e => e.primary?.node === 'b'), 5000, 'SSE delivers the change')
  const revs = events.map(e => e.revision)
  t.same(revs, [...revs].sort((x, y) => x - y), `SSE documents in revision order (${revs.join(',')})`)
  t.equal(new Set(revs).size, revs.length, 'no revision twice')
  await c.waitInSync('a', 30_000, 'b')
  const nbd = await c.nbd('b')
  await nbd.write(0, Buffer.alloc(4096, 9))
  await nbd.close()

  // restart the controller (kill -9): the published document stands, nothing fails over
  const before = await ctl.get('/v1/volumes/vol0')
  await ctl.kill('SIGKILL')
  await ctl.start()
  await new Promise(r => setTimeout(r, 3 * (ctl.cfg.timeoutMs as number)))
  const st = await ctl.get('/v1/status')
  t.same(st.failovers, [], 'no failover after a controller restart')
  t.equal(st.volumes[0].epoch, before.epoch, 'the same epoch')
  t.equal(st.volumes[0].primary.node, 'b')
  t.match(st.sites, [{ site: 'east', available: true }, { site: 'west', available: true }])
  t.match(st.nodes.find((n: any) => n.node === 'a'), { role: 'standby', available: true, lag: 0 })

  // a second controller on the same store is refused, naming the holder
  const second = spawn(process.execPath, [CLI, 'controller', '--config', ctl.config], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  second.stderr.on('data', d => (stderr += d))
  const code = await new Promise<number | null>(r => second.on('exit', r))
  t.equal(code, 1, 'the second controller exits 1')
  t.match(stderr, /ERR_LOCK_HELD: another controller \(pid \d+\) uses the store/, 'with ERR_LOCK_HELD naming the holder')
})
