import t from 'tap'
import type { Test } from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { crc32c } from '../src/util/crc32c.js'
import { BlockrepError } from '../src/util/errors.js'
import {
  connectTransport,
  encodeFrameBuffer,
  FrameDecoder,
  FrameTransport,
  HANDSHAKE_LIMITS,
  peerError,
  validateFramePayload,
} from '../src/wire/index.js'
import type { Frame, Message, TransportOptions } from '../src/wire/index.js'

/** A listening loopback server whose connections are handed out as raw sockets; closed at teardown. */
async function listen(t: Test): Promise<{ port: number; accepted: () => Promise<net.Socket> }> {
  const server = net.createServer()
  const pending: net.Socket[] = []
  const waiting: ((s: net.Socket) => void)[] = []
  const all: net.Socket[] = []
  server.on('connection', s => {
    all.push(s)
    const w = waiting.shift()
    if (w) w(s)
    else pending.push(s)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    for (const s of all) s.destroy()
    server.close()
  })
  const port = (server.address() as net.AddressInfo).port
  return {
    port,
    accepted: () => {
      const s = pending.shift()
      return s ? Promise.resolve(s) : new Promise(resolve => waiting.push(resolve))
    },
  }
}

/** A connected client/server transport pair over loopback. */
async function pair(t: Test, serverOpts: TransportOptions = {}, clientOpts: TransportOptions = {}): Promise<{ server: FrameTransport; client: FrameTransport }> {
  const l = await listen(t)
  const [client, sock] = await Promise.all([connectTransport('127.0.0.1', l.port, clientOpts), l.accepted()])
  const server = new FrameTransport(sock, serverOpts)
  t.teardown(async () => {
    await Promise.all([client.close(), server.close()])
  })
  return { server, client }
}

const write = (seq: number, payload: Buffer): Message => ({
  type: 'WRITE',
  seq,
  epoch: 1,
  offset: (seq % 1024) * payload.length,
  length: payload.length,
  zero: false,
  crc: crc32c(payload),
})

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise(r => setTimeout(r, 5))
  }
}

const codeOf = async (p: Promise<unknown>): Promise<string | undefined> => {
  try {
    await p
  } catch (err) {
    return (err as BlockrepError).code ?? String(err)
  }
  return undefined
}

t.test('wire - 1000 frames with 64 KiB payloads round trip in order', async t => {
  const { server, client } = await pair(t)
  const vol = { blockSize: 4096, size: 1024 * 65536 }
  const payloads = Array.from({ length: 8 }, () => randomBytes(65536))
  const sender = (async () => {
    for (let seq = 1; seq <= 1000; seq++) {
      if (!client.send(write(seq, payloads[seq % 8]!), payloads[seq % 8])) await client.drained()
    }
  })()
  let bad = 0
  for (let seq = 1; seq <= 1000; seq++) {
    const f = await server.next(5000)
    if (f.msg.type !== 'WRITE' || f.msg.seq !== seq || !f.payload.equals(payloads[seq % 8]!)) bad++
    validateFramePayload(f, vol)
  }
  await sender
  t.equal(bad, 0, 'every frame arrived intact and in order')
  t.equal(client.framesSent, 1000)
  t.equal(server.framesReceived, 1000)
  t.equal(server.bytesReceived, client.bytesSent, 'byte counters agree')
  t.ok(client.bytesSent > 1000 * 65536)
  t.match(server.remote, /^127\.0\.0\.1:\d+$/)
})

t.test('wire - backpressure: send returns false and drained resolves once the peer reads', async t => {
  const { server, client } = await pair(t, { maxQueuedBytes: 1 << 20 }, { highWaterMark: 256 << 10 })
  const payload = randomBytes(65536)
  let sent = 0
  let drained = false
  let d: Promise<unknown> = Promise.resolve()
  // kernel socket buffers on loopback absorb several MiB: send until even waiting does not help
  for (let rounds = 0; rounds < 200; rounds++) {
    while (client.send(write(++sent, payload), payload)) {
      /* fill */
    }
    drained = false
    d = client.drained().then(() => (drained = true))
    await new Promise(r => setTimeout(r, 100))
    if (!drained) break
  }
  t.equal(drained, false, `drained waits while the peer does not read (${sent} frames sent)`)
  for (let i = 1; i <= sent; i++) {
    const f = await server.next(5000)
    if (f.msg.type !== 'WRITE' || f.msg.seq !== i) t.fail(`frame ${i} out of order`)
  }
  await d
  t.equal(drained, true)
  t.equal(client.send({ type: 'PING', t: 1 }), true, 'writable again')
})

t.test('wire - next() times out with ERR_TIMEOUT and the connection stays usable', async t => {
  const { server, client } = await pair(t)
  const start = Date.now()
  t.equal(await codeOf(server.next(80)), 'ERR_TIMEOUT')
  t.ok(Date.now() - start >= 70)
  client.send({ type: 'ACK', seq: 5 })
  t.same((await server.next(1000)).msg, { type: 'ACK', seq: 5 })
})

t.test('wire - close with a BlockrepError sends an ERROR frame the other side receives', async t => {
  const { server, client } = await pair(t)
  client.send({ type: 'PING', t: 1 })
  await server.next(1000)
  await server.close(new BlockrepError('ERR_AUTH_FAILED', 'proof did not verify'))
  t.equal(server.closed, true)
  const f = await client.next(1000)
  t.same(f.msg, { type: 'ERROR', code: 'ERR_AUTH_FAILED', message: 'proof did not verify' })
  const e = peerError(f.msg as Extract<Message, { type: 'ERROR' }>)
  t.equal(e.code, 'ERR_AUTH_FAILED')
  t.equal(await codeOf(client.next(1000)), 'ERR_PEER_GONE', 'then the peer is gone')
  t.equal(client.closed, true)
  t.equal(client.send({ type: 'PING', t: 2 }), false, 'send after close writes nothing and returns false')
  t.throws(() => client.send({ type: 'PING', t: -2 }), { code: 'ERR_FRAME_INVALID' }, 'a malformed message still throws')
  t.equal(await codeOf(client.drained()), 'ERR_PEER_GONE')
  t.equal(await client.whenClosed().then(e => (e as BlockrepError).code), 'ERR_PEER_GONE')
  t.equal(await server.whenClosed().then(e => (e as BlockrepError).code), 'ERR_AUTH_FAILED')
  t.equal(peerError({ type: 'ERROR', code: 'ERR_FROM_THE_FUTURE', message: 'x' }).code, 'ERR_PROTOCOL', 'unknown codes map to ERR_PROTOCOL')
})

t.test('wire - a plain close sends no ERROR frame; pending next() rejects', async t => {
  const { server, client } = await pair(t)
  const pending = server.next()
  const closing = server.close()
  t.equal(await codeOf(pending), 'ERR_PEER_GONE')
  await closing
  t.equal(await codeOf(client.next(1000)), 'ERR_PEER_GONE', 'no frame, just the end')
  t.equal(await server.whenClosed(), undefined)
})

t.test('wire - push mode delivers queued frames first, in order, then reports the close', async t => {
  const { server, client } = await pair(t)
  for (let i = 1; i <= 5; i++) client.send({ type: 'ACK', seq: i })
  t.equal(((await server.next(1000)).msg as { seq: number }).seq, 1, 'pull the first one')
  await new Promise(r => setTimeout(r, 50))
  const got: number[] = []
  let closedWith: Error | undefined | 'open' = 'open'
  const ended = new Promise<void>(resolve => {
    server.setHandler(
      f => got.push((f.msg as { seq: number }).seq),
      err => {
        closedWith = err
        resolve()
      },
    )
  })
  t.same(got, [], 'never inside setHandler')
  t.equal(await codeOf(server.next()), 'ERR_PROTOCOL', 'next() is refused in push mode')
  for (let i = 6; i <= 300; i++) client.send({ type: 'ACK', seq: i })
  await new Promise(r => setTimeout(r, 50))
  await client.close()
  await ended
  t.same(got, Array.from({ length: 299 }, (_, i) => i + 2))
  t.equal((closedWith as unknown as BlockrepError).code, 'ERR_PEER_GONE')
})

t.test('wire - push mode pause() holds frames until resume()', async t => {
  const { server, client } = await pair(t)
  const got: number[] = []
  server.setHandler(f => {
    got.push((f.msg as { seq: number }).seq)
    if (got.length === 3) server.pause()
  })
  for (let i = 1; i <= 10; i++) client.send({ type: 'ACK', seq: i })
  await until(() => got.length >= 3)
  await new Promise(r => setTimeout(r, 80))
  t.same(got, [1, 2, 3], 'paused after the third')
  server.resume()
  await until(() => got.length >= 10)
  t.same(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
})

t.test('wire - a handler that throws closes the connection and tells the peer', async t => {
  const { server, client } = await pair(t)
  const closed = new Promise<Error | undefined>(resolve =>
    server.setHandler(
      () => {
        throw new BlockrepError('ERR_PROTOCOL', 'unexpected frame')
      },
      resolve,
    ),
  )
  client.send({ type: 'ACK', seq: 1 })
  t.equal(((await closed) as BlockrepError).code, 'ERR_PROTOCOL')
  t.same((await client.next(1000)).msg, { type: 'ERROR', code: 'ERR_PROTOCOL', message: 'unexpected frame' })
})

t.test('wire - garbage from the peer: frames before it arrive, then ERR_FRAME_INVALID, an ERROR frame and a logged reason', async t => {
  const l = await listen(t)
  const raw = net.connect(l.port, '127.0.0.1')
  const logs: { obj: object; msg: string }[] = []
  const server = new FrameTransport(await l.accepted(), { log: (obj, msg) => logs.push({ obj, msg }) })
  t.teardown(() => server.close())
  const received: Buffer[] = []
  raw.on('data', c => received.push(c))
  const rawEnded = once(raw, 'end')
  raw.write(Buffer.concat([encodeFrameBuffer({ type: 'ACK', seq: 1 }), Buffer.from('00000004000000000102', 'hex'), Buffer.from([1, 2])]))
  t.same((await server.next(1000)).msg, { type: 'ACK', seq: 1 })
  t.equal(await codeOf(server.next(1000)), 'ERR_FRAME_INVALID')
  await rawEnded
  const frames = new FrameDecoder().push(Buffer.concat(received))
  t.equal(frames.length, 1)
  t.match(frames[0]!.msg, { type: 'ERROR', code: 'ERR_FRAME_INVALID' })
  t.equal(logs.length, 1)
  t.match(logs[0]!.obj, { code: 'ERR_FRAME_INVALID' })
  raw.destroy()
})

t.test('wire - handshake limits refuse a payload before auth; setLimits lifts them', async t => {
  const { server, client } = await pair(t, { limits: HANDSHAKE_LIMITS })
  client.send({ type: 'AUTH_OK' })
  await server.next(1000)
  server.setLimits({ maxPayload: 1 << 20 })
  const p = randomBytes(1000)
  client.send(write(1, p), p)
  t.ok((await server.next(1000)).payload.equals(p))
  server.setLimits(HANDSHAKE_LIMITS)
  client.send(write(2, p), p)
  t.equal(await codeOf(server.next(1000)), 'ERR_FRAME_TOO_LARGE')
})

t.test('wire - idle timeout closes with ERR_TIMEOUT', async t => {
  const { server, client } = await pair(t, { idleTimeoutMs: 100 })
  t.equal(await codeOf(server.next()), 'ERR_TIMEOUT')
  t.match((await client.next(1000)).msg, { type: 'ERROR', code: 'ERR_TIMEOUT' })
})

t.test('wire - async iteration ends when the peer closes', async t => {
  const { server, client } = await pair(t)
  for (let i = 1; i <= 20; i++) client.send({ type: 'ACK', seq: i })
  void client.close()
  const seqs: number[] = []
  for await (const f of server) seqs.push((f.msg as { seq: number }).seq)
  t.same(seqs, Array.from({ length: 20 }, (_, i) => i + 1))
})

t.test('wire - connectTransport fails with ERR_PEER_GONE on a refused port', async t => {
  const l = await listen(t)
  const s = net.createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as net.AddressInfo).port
  await new Promise(r => s.close(r))
  t.equal(await codeOf(connectTransport('127.0.0.1', port)), 'ERR_PEER_GONE')
  t.ok(l.port > 0)
})

t.test('wire - frames arrive whole however the socket splits them', async t => {
  const l = await listen(t)
  const raw = net.connect(l.port, '127.0.0.1')
  raw.setNoDelay(true)
  await once(raw, 'connect')
  const server = new FrameTransport(await l.accepted())
  t.teardown(() => server.close())
  const payload = randomBytes(10_000)
  const bytes = Buffer.concat(Array.from({ length: 20 }, (_, i) => encodeFrameBuffer(write(i + 1, payload), payload)))
  for (let pos = 0; pos < bytes.length; pos += 777) {
    raw.write(bytes.subarray(pos, pos + 777))
    if (pos % 7 === 0) await new Promise(r => setImmediate(r))
  }
  const got: Frame[] = []
  for (let i = 0; i < 20; i++) got.push(await server.next(2000))
  t.same(
    got.map(f => (f.msg as { seq: number }).seq),
    Array.from({ length: 20 }, (_, i) => i + 1),
  )
  t.ok(got.every(f => f.payload.equals(payload)))
  raw.destroy()
})
