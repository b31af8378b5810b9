import t from 'tap'
import type { Test } from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { FaultProxy } from '../src/testing/fault-proxy.js'
import { connectTransport, FrameTransport } from '../src/wire/index.js'
import type { BlockrepError } from '../src/util/errors.js'

/** A target server that records what each connection received and can answer; closed at teardown. */
async function target(t: Test, onConn?: (s: net.Socket) => void): Promise<{ port: number; conns: { socket: net.Socket; got: Buffer[]; ended: Promise<void> }[] }> {
  const conns: { socket: net.Socket; got: Buffer[]; ended: Promise<void> }[] = []
  const server = net.createServer((socket) => {
    const got: Buffer[] = []
    socket.on('data', (d) => got.push(d))
    socket.on('error', () => {})
    conns.push({ socket, got, ended: new Promise((r) => socket.once('close', () => r())) })
    onConn?.(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    for (const c of conns) c.socket.destroy()
    server.close()
  })
  return { port: (server.address() as net.AddressInfo).port, conns }
}

async function proxyTo(t: Test, port: number): Promise<FaultProxy> {
  const p = await FaultProxy.start({ host: '127.0.0.1', port })
  t.teardown(() => p.close())
  return p
}

async function dial(t: Test, port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1')
  s.on('error', () => {})
  await once(s, 'connect')
  t.teardown(() => s.destroy())
  return s
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 5))
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const total = (bufs: Buffer[]) => Buffer.concat(bufs)

t.test('fault-proxy - forwards both ways unchanged and counts the bytes', async (t) => {
  const tg = await target(t, (s) => s.on('data', (d) => s.write(d)))
  const p = await proxyTo(t, tg.port)
  const c = await dial(t, p.port)
  const data = randomBytes(300_000)
  const echoed: Buffer[] = []
  c.on('data', (d) => echoed.push(d))
  c.write(data)
  await until(() => total(echoed).length === data.length)
  t.ok(total(tg.conns[0].got).equals(data), 'the target got every byte in order')
  t.ok(total(echoed).equals(data), 'the echo came back unchanged')
  t.equal(p.bytes.up, data.length)
  t.equal(p.bytes.down, data.length)
  t.equal(p.accepted, 1)
  t.equal(p.open, 1)
})

t.test('fault-proxy - delay holds each chunk back, in order', async (t) => {
  const tg = await target(t)
  const p = await proxyTo(t, tg.port)
  const c = await dial(t, p.port)
  p.delay(200, 50)
  const t0 = Date.now()
  for (let i = 0; i < 5; i++) c.write(Buffer.from([i]))
  await sleep(100)
  t.equal(total(tg.conns[0]?.got ?? []).length, 0, 'nothing arrives before the delay')
  await until(() => total(tg.conns[0].got).length === 5)
  t.ok(Date.now() - t0 >= 150, 'arrived after the delay')
  t.same([...total(tg.conns[0].got)], [0, 1, 2, 3, 4], 'order kept under jitter')
  p.resume()
  const t1 = Date.now()
  c.write(Buffer.from([9]))
  await until(() => total(tg.conns[0].got).length === 6)
  t.ok(Date.now() - t1 < 150, 'resume turns the delay off')
  t.equal(p.faults.delay, 1)
})

t.test('fault-proxy - stall holds traffic with the sockets open; resume delivers it', async (t) => {
  const tg = await target(t)
  const p = await proxyTo(t, tg.port)
  const c = await dial(t, p.port)
  c.write('before')
  await until(() => total(tg.conns[0]?.got ?? []).toString() === 'before')
  p.stall()
  c.write('during')
  await sleep(300)
  t.equal(total(tg.conns[0].got).toString(), 'before', 'nothing forwarded while stalled')
  t.notOk(c.destroyed, 'client socket still open')
  t.notOk(tg.conns[0].socket.destroyed, 'target socket still open')
  // a connection made during the stall is accepted and stalls too
  const c2 = await dial(t, p.port)
  c2.write('second')
  await sleep(200)
  p.resume()
  await until(() => total(tg.conns[0].got).toString() === 'beforeduring')
  await until(() => tg.conns.length === 2 && total(tg.conns[1].got).toString() === 'second')
  t.pass('held data delivered in order after resume')
})

t.test('fault-proxy - cut destroys both sides; new connections still work', async (t) => {
  const tg = await target(t)
  const p = await proxyTo(t, tg.port)
  const c = await dial(t, p.port)
  c.write('x')
  await until(() => tg.conns.length === 1 && total(tg.conns[0].got).length === 1)
  const clientClosed = once(c, 'close')
  t.equal(p.cut(), 1)
  await clientClosed
  await tg.conns[0].ended
  t.pass('both sides closed')
  const c2 = await dial(t, p.port)
  c2.write('y')
  await until(() => tg.conns.length === 2 && total(tg.conns[1].got).toString() === 'y')
  t.equal(p.faults.cut, 1)
})

t.test('fault-proxy - truncate forwards part of the next chunk then closes: the receiver sees half a frame', async (t) => {
  const tg = await target(t)
  const p = await proxyTo(t, tg.port)
  const server = new Promise<FrameTransport>((resolve) => {
    const s = net.createServer((sock) => resolve(new FrameTransport(sock)))
    s.listen(0, '127.0.0.1', async () => {
      const fp = await FaultProxy.start({ host: '127.0.0.1', port: (s.address() as net.AddressInfo).port })
      t.teardown(async () => {
        await fp.close()
        s.close()
      })
      const client = await connectTransport('127.0.0.1', fp.port)
      t.teardown(() => client.close())
      client.send({ type: 'PING', t: 1 })
      await sleep(50)
      const fired = fp.truncate(10, 'up')
      client.send({ type: 'PING', t: 2 })
      await fired
    })
  })
  const st = await server
  t.equal((await st.next(5000)).msg.type, 'PING', 'the whole first frame arrived')
  const err = await st.next(5000).then(() => null, (e: BlockrepError) => e)
  t.ok(err, 'the cut second frame is not delivered')
  t.match(err?.code, /ERR_PEER_GONE|ERR_FRAME/, `the receiver reports the end: ${err?.message}`)
  // raw bytes: exactly n of a chunk
  const c = await dial(t, p.port)
  c.write('abc')
  await until(() => tg.conns.length === 1 && total(tg.conns[0].got).length === 3)
  const fired = p.truncate(4, 'up')
  c.write('0123456789')
  await fired
  await tg.conns[0].ended
  t.equal(total(tg.conns[0].got).toString(), 'abc0123', 'exactly 4 bytes of the truncated chunk, then the end')
  t.equal(p.faults.truncate, 1)
})

t.test('fault-proxy - refuse closes new connections until resumed', async (t) => {
  const tg = await target(t)
  const p = await proxyTo(t, tg.port)
  p.refuse(true)
  const c = net.connect(p.port, '127.0.0.1')
  c.on('error', () => {})
  await once(c, 'close')
  t.equal(tg.conns.length, 0, 'the target never saw it')
  p.resume()
  const c2 = await dial(t, p.port)
  c2.write('ok')
  await until(() => tg.conns.length === 1 && total(tg.conns[0].got).toString() === 'ok')
  t.equal(p.faults.refuse, 1)
})
