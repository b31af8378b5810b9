import t from 'tap'
import { request } from 'node:http'
import { AdminServer, httpStatusFor } from '../src/agent/admin-server.js'
import { AgentMetrics } from '../src/agent/metrics.js'
import { AdminApiError, AdminClient } from '../src/cli/admin-client.js'
import { BlockrepError, isCode } from '../src/util/errors.js'
import type { AdminTarget, NodeStatus, PlanEntry, ProgressFigures, VerifyResult } from '../src/agent/status-types.js'

const TOKEN = 's3cret-token'
const T0 = 1_700_000_000_000

function sampleStatus(): NodeStatus {
  return {
    node: 'a',
    volumeId: '0f8fad5b-d9cb-469f-a165-70867728950e',
    role: 'primary',
    epoch: 3,
    headSeq: 1042,
    consistent: true,
    size: 2 ** 30,
    blockSize: 4096,
    journal: { tailSeq: 12, headSeq: 1042, capacity: 256 * 2 ** 20, used: 3 * 2 ** 20 },
    peers: [
      {
        node: 'b', address: '127.0.0.1:7802', protocol: 'sync', state: 'streaming',
        lastMode: { mode: 'HEAD_DELTA', reason: 'journal holds every record after the standby head', blocks: 42, bytes: 42 * 4096, at: T0 - 60_000 },
        ackedSeq: 1040, lagSeq: 2, lagBytes: 8192, bitmapBlocks: 0, resync: null, lastError: null, bytesSent: 10_485_760,
      },
      {
        node: 'c', address: '127.0.0.1:7803', protocol: 'async', state: 'syncing',
        lastMode: { mode: 'BITMAP', reason: 'journal wrapped; dirty bitmap valid', blocks: 1203, bytes: 1203 * 4096, at: T0 - 5000 },
        ackedSeq: 900, lagSeq: 142, lagBytes: 581632, bitmapBlocks: 1203,
        resync: { mode: 'BITMAP', round: 2, blocksTotal: 1203, blocksDone: 600, bytesDone: 600 * 4096, startedAt: T0 - 2000, rateBytesPerSec: 1228800, etaSeconds: 2 },
        lastError: null,
        bytesSent: 2_457_600,
      },
    ],
    nbd: { address: '127.0.0.1:10809', readOnly: false, connections: 1 },
    upSince: T0 - 3_600_000,
  }
}

interface FakeTarget extends AdminTarget {
  calls: string[]
  finishVerify?: (r: VerifyResult) => void
  failVerify?: (e: Error) => void
  progress: ProgressFigures | null
}

function fakeTarget(): FakeTarget {
  const target: FakeTarget = {
    calls: [],
    progress: null,
    status: () => sampleStatus(),
    plan: async (): Promise<PlanEntry[]> => [{ node: 'b', mode: 'NONE', reason: 'heads equal', blocks: 0, bytes: 0 }],
    promote: async force => {
      target.calls.push(`promote ${force}`)
      if (force === false) throw new BlockrepError('ERR_NOT_PRIMARY', 'peer b is primary; use --force', { context: { peer: 'b' } })
      return { epoch: 4 }
    },
    demote: async () => {
      target.calls.push('demote')
      return { alreadyStandby: false }
    },
    verify: peer => {
      target.calls.push(`verify ${peer}`)
      if (peer === 'nobody') return Promise.reject(new BlockrepError('ERR_USAGE', 'unknown peer "nobody"'))
      return new Promise((resolve, reject) => {
        target.finishVerify = resolve
        target.failVerify = reject
      })
    },
    verifyProgress: () => target.progress,
    connect: async peer => {
      target.calls.push(`connect ${peer}`)
    },
    disconnect: async peer => {
      if (peer === 'boom') throw new Error('kaboom')
      target.calls.push(`disconnect ${peer}`)
    },
  }
  return target
}

async function startServer(t: { teardown(fn: () => unknown): void }, target: AdminTarget, token: string | null = TOKEN, metrics?: AgentMetrics): Promise<{ server: AdminServer; base: string; port: number }> {
  const server = new AdminServer({ target, token, host: '127.0.0.1', port: 0, now: () => T0, ...(metrics === undefined ? {} : { metrics }) })
  const { port } = await server.listen()
  t.teardown(() => server.close())
  return { server, base: `http://127.0.0.1:${port}`, port }
}

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
  json: () => any
}

function http(method: string, url: string, body?: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent: false }, res => {
      const chunks: Buffer[] = []
      res.on('data', c => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json: () => JSON.parse(text) })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }

t.test('admin-server - GET /status and /plan answer JSON', async t => {
  const { base } = await startServer(t, fakeTarget())
  const s = await http('GET', `${base}/status`)
  t.equal(s.status, 200)
  t.match(s.headers['content-type'], /^application\/json/)
  t.same(s.json(), sampleStatus())
  const p = await http('GET', `${base}/plan`)
  t.same(p.json(), [{ node: 'b', mode: 'NONE', reason: 'heads equal', blocks: 0, bytes: 0 }])
})

t.test('admin-server - GET /metrics is Prometheus text from the status and engine events', async t => {
  const metrics = new AgentMetrics({ node: 'a' })
  metrics.observeWriteLatency(0.0007)
  metrics.modeChosen('c', 'BITMAP')
  const { base } = await startServer(t, fakeTarget(), TOKEN, metrics)
  const m = await http('GET', `${base}/metrics`)
  t.equal(m.status, 200)
  t.match(m.headers['content-type'], /^text\/plain/)
  for (const line of [
    'blockrep_head_seq{node="a"} 1042',
    'blockrep_epoch{node="a"} 3',
    'blockrep_consistent{node="a"} 1',
    'blockrep_peer_acked_seq{peer="b",node="a"} 1040',
    'blockrep_peer_lag_bytes{peer="c",node="a"} 581632',
    'blockrep_peer_lag_seq{peer="c",node="a"} 142',
    'blockrep_peer_state{peer="c",state="syncing",node="a"} 1',
    'blockrep_peer_state{peer="c",state="streaming",node="a"} 0',
    'blockrep_resync_blocks_total{peer="c",node="a"} 1203',
    'blockrep_resync_blocks_done{peer="c",node="a"} 600',
    'blockrep_resync_blocks_total{peer="b",node="a"} 0',
    'blockrep_modes_chosen_total{peer="c",mode="BITMAP",node="a"} 1',
    'blockrep_peer_sent_bytes_total{peer="c",node="a"} 2457600',
    'blockrep_peer_sent_bytes_total{peer="b",node="a"} 10485760',
    'blockrep_write_latency_seconds_bucket{le="0.001",node="a"} 1',
    'blockrep_write_latency_seconds_count{node="a"} 1',
  ]) t.ok(m.body.split('\n').includes(line), line)
})

t.test('admin-server - metrics without an explicit registry, peers that vanish drop out', async t => {
  const target = fakeTarget()
  const { base } = await startServer(t, target)
  t.match((await http('GET', `${base}/metrics`)).body, 'blockrep_peer_lag_seq{peer="c",node="a"} 142')
  const more = sampleStatus()
  more.peers[0]!.bytesSent += 100
  target.status = () => more
  t.match((await http('GET', `${base}/metrics`)).body, 'blockrep_peer_sent_bytes_total{peer="b",node="a"} 10485860', 'sent bytes count up by the difference')
  target.status = () => ({ ...sampleStatus(), peers: [] })
  t.notMatch((await http('GET', `${base}/metrics`)).body, 'peer="c"')
})

t.test('admin-server - POSTs need the bearer token', async t => {
  const target = fakeTarget()
  const { base } = await startServer(t, target)
  const none = await http('POST', `${base}/demote`)
  t.equal(none.status, 401)
  t.equal(none.headers['www-authenticate'], 'Bearer realm="blockrep"')
  t.same(none.json().error.code, 'ERR_AUTH_FAILED')
  const wrong = await http('POST', `${base}/demote`, '', { authorization: 'Bearer nope' })
  t.equal(wrong.status, 401)
  t.equal(wrong.json().error.message, 'wrong admin token')
  t.same(target.calls, [], 'nothing reached the target')
  const ok = await http('POST', `${base}/demote`, '', auth)
  t.equal(ok.status, 200)
  t.same(ok.json(), { ok: true, alreadyStandby: false })
  t.same(target.calls, ['demote'])
})

t.test('admin-server - no configured token disables POSTs (403), GETs still work', async t => {
  const target = fakeTarget()
  const { base } = await startServer(t, target, null)
  const r = await http('POST', `${base}/promote`, '{"force":true}', { authorization: 'Bearer anything' })
  t.equal(r.status, 403)
  t.match(r.json().error.message, 'no adminToken configured')
  t.equal((await http('GET', `${base}/status`)).status, 200)
  t.same(target.calls, [])
})

t.test('admin-server - promote, connect, disconnect and their errors', async t => {
  const target = fakeTarget()
  const { base } = await startServer(t, target)
  t.same((await http('POST', `${base}/promote`, '{"force":true}', auth)).json(), { epoch: 4 })
  const refused = await http('POST', `${base}/promote`, '{}', auth)
  t.equal(refused.status, 409)
  t.same(refused.json(), { error: { code: 'ERR_NOT_PRIMARY', message: 'peer b is primary; use --force', context: { peer: 'b' } } })
  t.equal((await http('POST', `${base}/promote`, '{"force":"yes"}', auth)).status, 400)
  t.same((await http('POST', `${base}/connect`, '{"peer":"b"}', auth)).json(), { ok: true })
  t.same((await http('POST', `${base}/disconnect`, '{"peer":"b"}', auth)).json(), { ok: true })
  const missing = await http('POST', `${base}/connect`, '{}', auth)
  t.equal(missing.status, 400)
  t.equal(missing.json().error.message, 'peer: required (a peer node id)')
  const boom = await http('POST', `${base}/disconnect`, '{"peer":"boom"}', auth)
  t.equal(boom.status, 500)
  t.same(boom.json(), { error: { code: 'ERR_INTERNAL', message: 'kaboom' } })
  t.same(target.calls, ['promote true', 'promote false', 'connect b', 'disconnect b'])
})

t.test('admin-server - bad requests: JSON, size, routes, methods', async t => {
  const { base } = await startServer(t, fakeTarget())
  const bad = await http('POST', `${base}/connect`, '{peer', auth)
  t.equal(bad.status, 400)
  t.match(bad.json().error.message, 'request body is not JSON')
  t.equal((await http('POST', `${base}/connect`, '[1]', auth)).status, 400)
  t.equal((await http('POST', `${base}/connect`, JSON.stringify({ peer: 'x'.repeat(70_000) }), auth)).status, 413)
  const nf = await http('GET', `${base}/nope`)
  t.equal(nf.status, 404)
  t.same(nf.json().error.code, 'ERR_USAGE')
  const na = await http('GET', `${base}/promote`)
  t.equal(na.status, 405)
  t.equal(na.headers.allow, 'POST')
  t.equal((await http('DELETE', `${base}/status`)).status, 405)
})

t.test('admin-server - verify runs as a job: start, progress, attach, result', async t => {
  const target = fakeTarget()
  const { base } = await startServer(t, target)
  t.equal((await http('GET', `${base}/verify?peer=b`)).status, 404, 'no job yet')
  const started = await http('POST', `${base}/verify`, '{"peer":"b"}', auth)
  t.equal(started.status, 202)
  t.match(started.json(), { peer: 'b', state: 'running', startedAt: T0, result: null, error: null })
  target.progress = { blocksTotal: 100, blocksDone: 40, bytesDone: 40 * 4096, startedAt: T0, rateBytesPerSec: 0, etaSeconds: null }
  t.same((await http('GET', `${base}/verify?peer=b`)).json().progress, target.progress)
  const again = await http('POST', `${base}/verify`, '{"peer":"b"}', auth)
  t.equal(again.status, 202)
  t.same(target.calls, ['verify b'], 'a second POST attaches to the running job')
  target.finishVerify?.({ peer: 'b', blocksCompared: 100, differingBlocks: [3, 4, 9], seconds: 1.5 })
  await new Promise(r => setImmediate(r))
  const done = (await http('GET', `${base}/verify?peer=b`)).json()
  t.match(done, { state: 'done', finishedAt: T0, progress: null, result: { differingBlocks: [3, 4, 9] } })
  t.equal((await http('GET', `${base}/verify`)).status, 400, 'peer is required')
})

t.test('admin-server - verify refused at once is an HTTP error; a later failure is a failed job', async t => {
  const target = fakeTarget()
  const { base } = await startServer(t, target)
  const r = await http('POST', `${base}/verify`, '{"peer":"nobody"}', auth)
  t.equal(r.status, 400)
  t.equal(r.json().error.message, 'unknown peer "nobody"')
  t.equal((await http('GET', `${base}/verify?peer=nobody`)).status, 404)
  await http('POST', `${base}/verify`, '{"peer":"c"}', auth)
  target.failVerify?.(new BlockrepError('ERR_PEER_GONE', 'peer c disconnected'))
  await new Promise(r => setImmediate(r))
  t.match((await http('GET', `${base}/verify?peer=c`)).json(), { state: 'failed', error: { code: 'ERR_PEER_GONE', message: 'peer c disconnected' } })
})

t.test('admin-server - listen errors are ERR_IO; close is idempotent', async t => {
  const { server, port } = await startServer(t, fakeTarget())
  const clash = new AdminServer({ target: fakeTarget(), token: null, port })
  await t.rejects(clash.listen(), { code: 'ERR_IO' })
  await server.close()
  await server.close()
})

t.test('admin-server - http status mapping', async t => {
  t.equal(httpStatusFor('ERR_USAGE'), 400)
  t.equal(httpStatusFor('ERR_NOT_PRIMARY'), 409)
  t.equal(httpStatusFor('ERR_TIMEOUT'), 504)
  t.equal(httpStatusFor('ERR_SHUTDOWN'), 503)
  t.equal(httpStatusFor('ERR_IO'), 500)
})

t.test('admin-client - talks to the server and maps its errors', async t => {
  const target = fakeTarget()
  const { port } = await startServer(t, target)
  const client = new AdminClient({ address: `127.0.0.1:${port}`, token: TOKEN })
  t.same(await client.status(), sampleStatus())
  t.same(await client.plan(), [{ node: 'b', mode: 'NONE', reason: 'heads equal', blocks: 0, bytes: 0 }])
  t.match(await client.metrics(), 'blockrep_head_seq')
  t.same(await client.promote(true), { epoch: 4 })
  await client.connect('b')
  await client.disconnect('b')
  await client.demote()
  const err = await client.promote(false).catch((e: unknown) => e)
  t.ok(err instanceof AdminApiError)
  t.ok(isCode(err, 'ERR_NOT_PRIMARY'))
  t.equal((err as AdminApiError).status, 409)
  t.equal((err as AdminApiError).remoteCode, 'ERR_NOT_PRIMARY')
  const internal = await client.disconnect('boom').catch((e: unknown) => e)
  t.equal((internal as AdminApiError).remoteCode, 'ERR_INTERNAL')
  t.ok(isCode(internal, 'ERR_IO'))
  const job = await client.startVerify('b')
  t.equal(job.state, 'running')
  t.equal((await client.verifyJob('b')).peer, 'b')
  const noToken = new AdminClient({ address: { host: '127.0.0.1', port } })
  t.ok(isCode(await noToken.demote().catch((e: unknown) => e), 'ERR_AUTH_FAILED'))
})

t.test('admin-client - unreachable agent, wrong server, timeout', async t => {
  const { port } = await startServer(t, fakeTarget())
  const { server } = await startServer(t, fakeTarget())
  const gone = server.address?.port as number
  await server.close()
  const e1 = await new AdminClient({ address: `127.0.0.1:${gone}` }).status().catch((e: unknown) => e)
  t.ok(isCode(e1, 'ERR_IO'))
  t.match((e1 as Error).message, 'ECONNREFUSED')
  // a server that never answers
  const { createServer } = await import('node:http')
  const silent = createServer(() => {})
  await new Promise<void>(r => silent.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    silent.closeAllConnections()
    silent.close()
  })
  const sp = (silent.address() as { port: number }).port
  const e2 = await new AdminClient({ address: `127.0.0.1:${sp}`, timeoutMs: 100 }).status().catch((e: unknown) => e)
  t.ok(isCode(e2, 'ERR_TIMEOUT'))
  // a server that is not ours
  const other = createServer((_req, res) => res.writeHead(404).end('<html>'))
  await new Promise<void>(r => other.listen(0, '127.0.0.1', r))
  t.teardown(() => other.close())
  const e3 = await new AdminClient({ address: `127.0.0.1:${(other.address() as { port: number }).port}` }).status().catch((e: unknown) => e)
  t.ok(isCode(e3, 'ERR_PROTOCOL'))
  t.ok(port > 0)
  t.throws(() => new AdminClient({ address: 'nope' }), { code: 'ERR_USAGE' })
})
