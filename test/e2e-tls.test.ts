import t from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, randomWrites, sha256File, waitFor, SECRET, TOKEN } from './helpers/cluster.js'
import { connectTransport } from '../src/wire/index.js'
import { makeCa, makeCert } from './helpers/certs.js'
import type { CertFiles } from './helpers/certs.js'

const MiB = 1024 * 1024
const dir = mkdtempSync(join(tmpdir(), 'blockrep-e2e-tls-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const ca1 = makeCa(dir, 'ca1')
const ca2 = makeCa(dir, 'ca2')
const certs: Record<string, CertFiles> = { a: makeCert(dir, ca1, 'a'), b: makeCert(dir, ca1, 'b'), x: makeCert(dir, ca2, 'x') }
const tlsOf = (c: CertFiles, ca: CertFiles, require = true) => ({ tls: { cert: c.cert, key: c.key, ca: ca.cert, require } })

t.test('e2e tls - a TLS pair replicates byte-identical, and no secret or key reaches the logs or the status', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 16 * MiB, journalSize: 4 * MiB, extra: { a: { ...tlsOf(certs.a, ca1), log: { level: 'debug' } }, b: { ...tlsOf(certs.b, ca1), log: { level: 'debug' } } } })
  await c.initAll()
  for (const id of ['a', 'b']) await c.start(id, 60_000)
  await c.waitInSync('b', 30_000)
  const nbd = await c.nbd('a')
  t.teardown(() => nbd.close())
  await randomWrites(nbd, 16 * MiB, 300, 4096, 8, 11)
  await nbd.write(5 * MiB + 512, Buffer.alloc(3 * 512 + 100, 0x5a).subarray(0, 1536))
  await nbd.flush()
  const st = await c.waitInSync('b', 30_000)
  t.equal(st.peers[0].state, 'streaming')
  t.equal(await c.sha('b'), await c.sha('a'), 'volumes identical over TLS')
  t.match(await c.logOf('b'), /catch-up|primary session|AUTH|session/i)

  // secrets: the replication secret, the admin token and the private keys never show
  const texts = [await c.logOf('a'), await c.logOf('b'), JSON.stringify(await c.status('a')), JSON.stringify(await c.status('b')), JSON.stringify(await c.admin('a', 'GET', '/plan').catch(() => ''))]
  const metrics = await fetch(`http://127.0.0.1:${c.node('a').adminPort}/metrics`).then((r) => r.text())
  texts.push(metrics)
  const keyBody = (f: string) => readFileSync(f, 'utf8').split('\n').filter((l) => l && !l.startsWith('-----'))
  const needles = [SECRET, TOKEN, ...keyBody(certs.a.key), ...keyBody(certs.b.key)]
  const names = ['a log', 'b log', 'a status', 'b status', 'a plan', 'a metrics']
  for (const [i, text] of texts.entries()) {
    t.ok(text.length > 0, `${names[i]} is not empty`)
    t.same(needles.filter((n) => text.includes(n)).map((n) => `${n.slice(0, 4)}…`), [], `${names[i]} holds no secret, token or key line`)
  }
  // the link really is TLS: b refuses a plain connection
  const plain = await connectTransport('127.0.0.1', c.node('b').replPort, {})
  plain.send({ type: 'PING', t: 1 })
  const f = await plain.next(5000)
  t.match((f.msg as { message?: string }).message, /requires TLS/, 'b refuses plain connections, so a reached it over TLS')
  await plain.close()
})

t.test('e2e tls - a standby that requires TLS refuses a plain primary, logs why, and writes nothing', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB, journalSize: 2 * MiB, extra: { b: tlsOf(certs.b, ca1) } })
  await c.initAll()
  const before = await sha256File(c.node('b').data)
  for (const id of ['a', 'b']) await c.start(id, 60_000)
  const nbd = await c.nbd('a')
  t.teardown(() => nbd.close())
  await randomWrites(nbd, 8 * MiB, 50, 4096, 4, 5)
  await waitFor(async () => /requires TLS/.test((await c.status('a')).peers[0].lastError ?? ''), 20_000, 'the refusal reaches the primary')
  const st = await c.status('a')
  t.not(st.peers[0].state, 'streaming', 'the link never streams')
  t.match(st.peers[0].lastError, /requires TLS/, `the primary says why: ${st.peers[0].lastError}`)
  t.match(await c.logOf('b'), /replication connection refused.*requires TLS|requires TLS.*replication connection refused/, 'the standby logs the refusal with its reason')
  t.equal((await c.status('b')).headSeq, 0, 'the standby applied nothing')
  t.equal(await sha256File(c.node('b').data), before, "the standby's data file is untouched")
})

t.test('e2e tls - certificates from different CAs are refused both ways, nothing written', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB, journalSize: 2 * MiB, extra: { a: tlsOf(certs.x, ca2), b: tlsOf(certs.b, ca1) } })
  await c.initAll()
  const before = await sha256File(c.node('b').data)
  for (const id of ['a', 'b']) await c.start(id, 60_000)
  const nbd = await c.nbd('a')
  t.teardown(() => nbd.close())
  await randomWrites(nbd, 8 * MiB, 20, 4096, 4, 6)
  await waitFor(async () => /certificate/.test((await c.status('a')).peers[0].lastError ?? ''), 20_000, 'the certificate refusal on the primary')
  const st = await c.status('a')
  t.not(st.peers[0].state, 'streaming')
  t.match(st.peers[0].lastError, /certificate of 127\.0\.0\.1:\d+ was rejected/, `the primary says why: ${st.peers[0].lastError}`)
  t.equal((await c.status('b')).headSeq, 0, 'the standby applied nothing')
  t.equal(await sha256File(c.node('b').data), before, "the standby's data file is untouched")
})
