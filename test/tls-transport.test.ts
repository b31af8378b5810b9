import t from 'tap'
import type { Test } from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { crc32c } from '../src/util/crc32c.js'
import { acceptTransport, connectTransport, dialTransport } from '../src/wire/index.js'
import type { FrameTransport, TlsConfig } from '../src/wire/index.js'
import type { BlockrepError } from '../src/util/errors.js'
import { makeCa, makeCert } from './helpers/certs.js'

const dir = mkdtempSync(join(tmpdir(), 'blockrep-tls-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const ca1 = makeCa(dir, 'ca1')
const ca2 = makeCa(dir, 'ca2')
const certA = makeCert(dir, ca1, 'a')
const certB = makeCert(dir, ca1, 'b')
const certX = makeCert(dir, ca2, 'x')
const certWrongName = makeCert(dir, ca1, 'elsewhere', 'DNS:elsewhere.example')

function tlsOf(c: { cert: string; key: string }, ca: { cert: string }, extra: Partial<TlsConfig> = {}): TlsConfig {
  return { cert: readFileSync(c.cert), key: readFileSync(c.key), ca: readFileSync(ca.cert), require: true, verifyHostname: true, ...extra }
}

/** A loopback listener whose sockets go through `acceptTransport(tls)`; results in arrival order. */
async function acceptor(t: Test, tls: TlsConfig | null): Promise<{ port: number; next: () => Promise<FrameTransport> }> {
  const results: Promise<FrameTransport>[] = []
  const waiting: ((p: Promise<FrameTransport>) => void)[] = []
  const server = net.createServer(s => {
    const p = acceptTransport(s, { tls, handshakeTimeoutMs: 5000 })
    p.catch(() => {})
    const w = waiting.shift()
    if (w) w(p)
    else results.push(p)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const open: FrameTransport[] = []
  t.teardown(async () => {
    await Promise.all(open.map(x => x.close().catch(() => {})))
    server.close()
  })
  return {
    port: (server.address() as net.AddressInfo).port,
    next: async () => {
      const p = results.shift() ?? (await new Promise<Promise<FrameTransport>>(r => waiting.push(r)))
      const x = await p
      open.push(x)
      return x
    },
  }
}

t.test('tls-transport - a TLS pair carries frames both ways, payload intact', async t => {
  const a = await acceptor(t, tlsOf(certA, ca1))
  const client = await dialTransport('127.0.0.1', a.port, { tls: tlsOf(certB, ca1) })
  t.teardown(() => client.close())
  const server = await a.next()
  const payload = randomBytes(200_000)
  client.send({ type: 'PING', t: 7 })
  const f = await server.next(5000)
  t.equal(f.msg.type, 'PING')
  server.send({ type: 'WRITE', seq: 1, epoch: 1, offset: 0, length: payload.length, zero: false, crc: crc32c(payload) }, payload)
  const g = await client.next(5000)
  t.equal(g.msg.type, 'WRITE')
  t.ok(Buffer.from(g.payload ?? []).equals(payload), 'payload intact through TLS')
})

t.test('tls-transport - a client certificate from another CA is refused with a clear reason on both sides', async t => {
  const a = await acceptor(t, tlsOf(certA, ca1))
  // the client trusts ca1 (so the server's certificate verifies) but presents a ca2 certificate
  const dialed = dialTransport('127.0.0.1', a.port, { tls: { ...tlsOf(certX, ca2), ca: Buffer.concat([readFileSync(ca1.cert), readFileSync(ca2.cert)]) } })
  const refused = await a.next().then(() => null, (e: BlockrepError) => e)
  t.ok(refused, 'the acceptor refuses')
  t.equal(refused?.code, 'ERR_AUTH_FAILED')
  t.match(refused?.message, /client certificate of 127\.0\.0\.1:\d+ was rejected/)
  // TLS 1.3: the client may finish its side first; then the acceptor's ERROR frame says why
  const client = await dialed.catch((e: BlockrepError) => e)
  if (client instanceof Error) {
    t.match((client as BlockrepError).code, /ERR_AUTH_FAILED|ERR_PEER_GONE/)
  } else {
    const why = await client.next(5000).catch((e: BlockrepError) => e)
    t.match(String((why as { msg?: { message?: string } }).msg?.message ?? (why as Error).message), /certificate|rejected|peer/)
    await client.close()
  }
})

t.test('tls-transport - the dialer refuses a listener whose certificate another CA signed', async t => {
  const a = await acceptor(t, tlsOf(certX, ca2))
  const err = await dialTransport('127.0.0.1', a.port, { tls: tlsOf(certB, ca1), timeoutMs: 5000 }).then(() => null, (e: BlockrepError) => e)
  t.equal(err?.code, 'ERR_AUTH_FAILED')
  t.match(err?.message, /certificate of 127\.0\.0\.1:\d+ was rejected/)
})

t.test('tls-transport - the dialer checks the listener certificate names the dialed address', async t => {
  const a = await acceptor(t, tlsOf(certWrongName, ca1))
  const err = await dialTransport('127.0.0.1', a.port, { tls: tlsOf(certB, ca1), timeoutMs: 5000 }).then(() => null, (e: BlockrepError) => e)
  t.equal(err?.code, 'ERR_AUTH_FAILED')
  t.match(err?.message, /127\.0\.0\.1/)
  // and accepts it with verifyHostname: false (the chain still has to verify)
  const ok = await dialTransport('127.0.0.1', a.port, { tls: tlsOf(certB, ca1, { verifyHostname: false }), timeoutMs: 5000 })
  t.notOk(ok.closed)
  await ok.close()
})

t.test('tls-transport - a node that requires TLS refuses a plain peer, and the plain peer reads why', async t => {
  const a = await acceptor(t, tlsOf(certA, ca1))
  const plain = await connectTransport('127.0.0.1', a.port, {})
  t.teardown(() => plain.close())
  plain.send({ type: 'PING', t: 1 })
  const refused = await a.next().then(() => null, (e: BlockrepError) => e)
  t.equal(refused?.code, 'ERR_HANDSHAKE_REFUSED')
  t.match(refused?.message, /requires TLS/)
  const f = await plain.next(5000)
  t.equal(f.msg.type, 'ERROR')
  t.match((f.msg as { message: string }).message, /requires TLS/)
})

t.test('tls-transport - require: false accepts both plain and TLS peers', async t => {
  const a = await acceptor(t, tlsOf(certA, ca1, { require: false }))
  const plain = await connectTransport('127.0.0.1', a.port, {})
  t.teardown(() => plain.close())
  plain.send({ type: 'PING', t: 1 })
  const s1 = await a.next()
  t.equal((await s1.next(5000)).msg.type, 'PING')
  const secure = await dialTransport('127.0.0.1', a.port, { tls: tlsOf(certB, ca1) })
  t.teardown(() => secure.close())
  secure.send({ type: 'PING', t: 2 })
  const s2 = await a.next()
  t.equal((await s2.next(5000)).msg.type, 'PING')
})

t.test('tls-transport - a TLS dialer meeting a plain listener fails with a hint', async t => {
  const a = await acceptor(t, null)
  const dialed = dialTransport('127.0.0.1', a.port, { tls: tlsOf(certB, ca1), timeoutMs: 5000 }).then(() => null, (e: BlockrepError) => e)
  const refused = await a.next().then(() => null, (e: BlockrepError) => e)
  t.equal(refused?.code, 'ERR_HANDSHAKE_REFUSED')
  t.match(refused?.message, /started a TLS handshake but this node has no tls configured/)
  const err = await dialed
  t.equal(err?.code, 'ERR_PEER_GONE')
  t.match(err?.message, /does it have tls configured/)
})
