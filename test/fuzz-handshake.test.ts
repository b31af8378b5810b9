import t from 'tap'
import fc from 'fast-check'
import net from 'node:net'
import { Cluster, SECRET } from './helpers/cluster.js'
import { FrameDecoder, HANDSHAKE_LIMITS, encodeFrameBuffer } from '../src/wire/index.js'
import type { Frame, Message, WireMeta } from '../src/wire/index.js'
import { authProof, newNonce } from '../src/replication/auth.js'
import { PROTOCOL_VERSION } from '../src/wire/messages.js'
import { crc32c } from '../src/util/crc32c.js'
import { property } from './helpers/property.js'

/**
 * Fuzzing the replication handshake of a real standby agent over TCP, as a
 * fake primary: random and mutated HELLO/AUTH bytes before authentication,
 * and, after a genuine authentication, mutated META/MODE/WRITE/BLOCKS streams.
 * Every connection must end (no hang) with the agent still running and
 * answering; its data may change only if it advanced its head (a valid
 * session), never otherwise.
 */
const MiB = 1024 * 1024
const SIZE = 1 * MiB
const VOL = '6f1c2c8e-2d7a-4d33-9a51-0c0ffee00001'
const DEADLINE_MS = 8000

const hello = (nonce: Buffer, over: Partial<Message> = {}): Message => ({ type: 'HELLO', version: PROTOCOL_VERSION, volumeId: VOL, nodeId: 'a', role: 'primary', blockSize: 4096, size: SIZE, nonce, ...over }) as Message
const primaryMeta = (headSeq: number): WireMeta => ({
  volumeId: VOL, nodeId: 'a', blockSize: 4096, size: SIZE, role: 'primary', epochs: [{ epoch: 1, nodeId: 'a', startSeq: 1 }],
  headSeq, journalTail: 1, consistent: true, syncedOnce: true, resyncRemaining: null, cleanShutdown: true, metaCorrupt: false,
})

const data = fc.uint8Array({ minLength: 1, maxLength: 8192 }).map((a) => Buffer.from(a))
const postAuth: fc.Arbitrary<Buffer> = fc.oneof(
  fc.nat(100).map((h) => encodeFrameBuffer({ type: 'META', meta: primaryMeta(h) })),
  fc.tuple(fc.constantFrom('NONE', 'HEAD_DELTA', 'BITMAP', 'FULL'), fc.boolean()).map(([mode, checksum]) =>
    encodeFrameBuffer({ type: 'MODE', mode, reason: 'fuzz', blocks: 1, bytes: 4096, epochs: [{ epoch: 1, nodeId: 'a', startSeq: 1 }], branchSeq: null, checksum } as Message)),
  fc.tuple(fc.integer({ min: 1, max: 5 }), fc.nat(SIZE), data).map(([seq, offset, p]) =>
    encodeFrameBuffer({ type: 'WRITE', seq, epoch: 1, offset, length: p.length, zero: false, crc: crc32c(p) }, p)),
  fc.integer({ min: 1, max: 4 }).map((n) => encodeFrameBuffer({ type: 'ROUND_BEGIN', round: 1, mode: 'FULL', blocks: n, frozenSeq: 0, bitmap: null })),
  fc.nat(100).map((h) => encodeFrameBuffer({ type: 'SYNC_DONE', headSeq: h })),
  fc.constant(encodeFrameBuffer({ type: 'PING', t: 1 })),
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
)

type Flip = { at: number; x: number }
const flips = fc.array(fc.record({ at: fc.nat(), x: fc.integer({ min: 1, max: 255 }) }), { maxLength: 3 })
function flip(b: Buffer, fs: Flip[]): Buffer {
  const out = Buffer.from(b)
  for (const f of fs) if (out.length) out[f.at % out.length] ^= f.x
  return out
}

const input = fc.oneof(
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => ({ kind: 'raw' as const, bytes: Buffer.from(a) })) },
  { weight: 2, arbitrary: fc.tuple(fc.record({ volumeId: fc.constantFrom(VOL, 'other'), role: fc.constantFrom('primary', 'standby'), size: fc.constantFrom(SIZE, SIZE * 2) }), flips, fc.nat(200)).map(([over, fs, cut]) => {
    const b = flip(encodeFrameBuffer(hello(newNonce(), over as Partial<Message>)), fs)
    return { kind: 'raw' as const, bytes: b.subarray(0, b.length - (cut % 4 === 0 ? cut % b.length : 0)) }
  }) },
  { weight: 4, arbitrary: fc.tuple(fc.array(postAuth, { minLength: 1, maxLength: 6 }), flips).map(([frames, fs]) => ({ kind: 'authed' as const, bytes: flip(Buffer.concat(frames), fs) })) },
)

/** A connection to the standby with a frame reader. */
class Conn {
  private readonly s: net.Socket
  private readonly dec = new FrameDecoder(HANDSHAKE_LIMITS)
  private readonly frames: Frame[] = []
  private wake: (() => void) | null = null
  readonly closed: Promise<void>
  constructor(port: number) {
    this.s = net.connect(port, '127.0.0.1')
    this.s.on('error', () => {})
    this.s.on('data', (c: Buffer) => {
      try {
        this.frames.push(...this.dec.push(c))
      } catch {
        // the agent's own bytes are not under test here
      }
      this.wake?.()
    })
    this.closed = new Promise((r) => this.s.on('close', () => {
      this.wake?.()
      r()
    }))
  }
  send(b: Buffer): void {
    this.s.write(b)
  }
  end(b: Buffer): void {
    this.s.end(b)
  }
  destroy(): void {
    this.s.destroy()
  }
  async next(): Promise<Frame> {
    const until = Date.now() + DEADLINE_MS
    while (this.frames.length === 0) {
      if (this.s.destroyed || Date.now() > until) throw new Error('no frame from the agent')
      await new Promise<void>((r) => {
        this.wake = r
        setTimeout(r, 100)
      })
    }
    return this.frames.shift()!
  }
}

t.test('handshake fuzz - a standby agent survives random, mutated and post-authentication garbage from a fake primary', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: SIZE, journalSize: 1 * MiB })
  await c.init('b', ['--volume-id', VOL])
  await c.start('b')
  const port = c.node('b').replPort
  let sha = await c.sha('b')
  let head = (await c.status('b')).headSeq
  const counts = { raw: 0, authed: 0, authFailed: 0 }
  await property(t, 'handshake fuzz', fc.asyncProperty(input, async (inp) => {
    const conn = new Conn(port)
    if (inp.kind === 'raw') {
      counts.raw++
      conn.end(inp.bytes)
    } else {
      const nonce = newNonce()
      conn.send(encodeFrameBuffer(hello(nonce)))
      const theirs = await conn.next()
      if (theirs.msg.type !== 'HELLO') throw new Error(`standby answered HELLO with ${theirs.msg.type}`)
      conn.send(encodeFrameBuffer({ type: 'AUTH', proof: authProof(SECRET, 'a', theirs.msg.nonce, nonce) }))
      const auth = await conn.next()
      if (auth.msg.type !== 'AUTH') {
        counts.authFailed++
        throw new Error(`standby answered a good proof with ${auth.msg.type}`)
      }
      conn.send(encodeFrameBuffer({ type: 'AUTH_OK' }))
      counts.authed++
      conn.end(inp.bytes)
    }
    const timer = new Promise<'hang'>((r) => setTimeout(() => r('hang'), DEADLINE_MS).unref())
    if ((await Promise.race([conn.closed.then(() => 'closed' as const), timer])) === 'hang') {
      conn.destroy()
      throw new Error(`the agent kept the connection open ${DEADLINE_MS} ms after the input ended`)
    }
    const p = c.node('b').proc
    if (!p || p.exitCode !== null || p.signalCode !== null) throw new Error(`the agent exited (${p?.exitCode ?? p?.signalCode}); log ${c.node('b').log}`)
    const st = await c.status('b')
    const nowSha = await c.sha('b')
    if (st.headSeq === head && nowSha !== sha) throw new Error(`the standby's data changed without its head moving (head ${head})`)
    if (st.headSeq < head) throw new Error(`the standby's head went back from ${head} to ${st.headSeq}`)
    head = st.headSeq
    sha = nowSha
  }), 40)
  t.comment(`inputs: ${JSON.stringify(counts)}`)
  t.ok(counts.authed > 5, `${counts.authed} inputs reached the post-authentication phase`)
  t.equal((await c.status('b')).role, 'standby', 'the agent still answers, as a standby')
})
