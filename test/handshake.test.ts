import t from 'tap'
import type { Test } from 'tap'
import net from 'node:net'
import { FrameTransport } from '../src/wire/transport.js'
import { HANDSHAKE_LIMITS } from '../src/wire/frame-codec.js'
import { helloAndAuth } from '../src/replication/handshake.js'
import type { NodeStore } from '../src/replication/node-store.js'
import type { NodeMeta } from '../src/storage/types.js'
import { BlockrepError } from '../src/util/errors.js'

/** Two FrameTransports over a real loopback TCP connection, closed at teardown. */
async function pair(t: Test): Promise<[FrameTransport, FrameTransport]> {
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
  const dial = net.connect(port, '127.0.0.1')
  await new Promise((r) => dial.once('connect', r))
  const a = new FrameTransport(dial, { limits: HANDSHAKE_LIMITS, closeTimeoutMs: 200 })
  const b = new FrameTransport(await accepted, { limits: HANDSHAKE_LIMITS, closeTimeoutMs: 200 })
  t.teardown(async () => {
    await Promise.all([a.close(), b.close()])
    await new Promise((r) => server.close(r))
  })
  return [a, b]
}

/** The handshake reads nothing of the store but its metadata: a store with just that. */
function store(nodeId: string, role: 'primary' | 'standby', over: Partial<NodeMeta> = {}): NodeStore {
  const meta = { volumeId: 'v', nodeId, blockSize: 4096, size: 1 << 20, role, epochs: [], headSeq: 0, journalTail: 1, consistent: true, syncedOnce: true, resyncRemaining: null, cleanShutdown: true, peers: {}, ...over }
  return { meta } as unknown as NodeStore
}

const SECRET = 'a-shared-secret-of-some-length'

async function both(p: Promise<unknown>, q: Promise<unknown>): Promise<[unknown, unknown]> {
  const s = await Promise.allSettled([p, q])
  return s.map((r) => (r.status === 'fulfilled' ? r.value : r.reason)) as [unknown, unknown]
}

const code = (x: unknown): string => (x instanceof BlockrepError ? x.code : x instanceof Error ? `untyped: ${x.message}` : 'ok')

t.test('handshake - HELLO and mutual auth with the shared secret: each side learns the other', async (t) => {
  const [a, b] = await pair(t)
  const [ha, hb] = await both(helloAndAuth(a, store('a', 'primary'), SECRET, true, 'b'), helloAndAuth(b, store('b', 'standby'), SECRET, false))
  t.match(ha, { type: 'HELLO', nodeId: 'b', role: 'standby' }, 'the dialer got the standby HELLO')
  t.match(hb, { type: 'HELLO', nodeId: 'a', role: 'primary' }, 'the listener got the primary HELLO')
})

t.test('handshake - a wrong secret fails authentication on both sides with ERR_AUTH_FAILED', async (t) => {
  const [a, b] = await pair(t)
  const [ra, rb] = await both(helloAndAuth(a, store('a', 'primary'), SECRET, true), helloAndAuth(b, store('b', 'standby'), 'another-secret-entirely!', false))
  t.equal(code(rb), 'ERR_AUTH_FAILED', 'the listener refuses the proof')
  t.not(code(ra), 'ok', `the dialer does not complete either (${code(ra)})`)
})

t.test('handshake - a peer with the expected address but another node id is refused', async (t) => {
  const [a, b] = await pair(t)
  // the refusing side closes the connection, as the link does: the other side's wait ends with it
  const [ra] = await both(helloAndAuth(a, store('a', 'primary'), SECRET, true, 'b').finally(() => a.close()), helloAndAuth(b, store('c', 'standby'), SECRET, false))
  t.equal(code(ra), 'ERR_HANDSHAKE_REFUSED')
  t.match((ra as Error).message, /expected node b.*found c/)
})

t.test("handshake - a peer claiming this node's own id is refused before any proof is sent", async (t) => {
  const [a, b] = await pair(t)
  const [ra] = await both(helloAndAuth(a, store('a', 'primary'), SECRET, true), helloAndAuth(b, store('a', 'standby'), SECRET, false))
  t.equal(code(ra), 'ERR_HANDSHAKE_REFUSED')
  t.match((ra as Error).message, /own id/)
})

t.test('handshake - a peer that never answers times out instead of hanging', async (t) => {
  const [a] = await pair(t)
  const started = Date.now()
  // expectFrame's timeout is 10 s by default; the transport closing ends the wait sooner
  setTimeout(() => void a.close(), 300)
  const [ra] = await both(helloAndAuth(a, store('a', 'primary'), SECRET, true), Promise.resolve())
  t.not(code(ra), 'ok', `the handshake fails (${code(ra)})`)
  t.ok(Date.now() - started < 5000, 'promptly once the connection ends')
})
