import t from 'tap'
import type { Test } from 'tap'
import net from 'node:net'
import path from 'node:path'
import { FrameTransport } from '../src/wire/transport.js'
import { HANDSHAKE_LIMITS } from '../src/wire/frame-codec.js'
import { encodeRuns } from '../src/wire/messages.js'
import type { Frame, Message } from '../src/wire/messages.js'
import { helloAndAuth, expectFrame } from '../src/replication/handshake.js'
import { NodeStore, defaultPaths } from '../src/replication/node-store.js'
import type { NodeStore as Store } from '../src/replication/node-store.js'
import { StandbySession } from '../src/replication/standby-session.js'
import { crc32c } from '../src/util/crc32c.js'
import { silentLogger } from '../src/util/log.js'

/**
 * The standby's session driven by a fake primary over a real loopback
 * connection, against a real store in a temp dir (the world passed in).
 */
const BS = 4096
const BLOCKS = 16
const SECRET = 'standby-session-test-secret'
const VOL = '11111111-2222-4333-8444-555555555555'

async function setup(t: Test) {
  const paths = defaultPaths(path.join(t.testdir(), 'b.img'))
  NodeStore.init({ ...paths, nodeId: 'b', size: BLOCKS * BS, blockSize: BS, journalSize: 1 << 20, role: 'standby', volumeId: '' })
  const store = NodeStore.open(paths)
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
  const dial = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  await new Promise((r) => dial.once('connect', r))
  const primary = new FrameTransport(dial, { limits: HANDSHAKE_LIMITS, closeTimeoutMs: 200 })
  const standbyT = new FrameTransport(await accepted, { limits: HANDSHAKE_LIMITS, closeTimeoutMs: 200 })
  const session = new StandbySession(standbyT, store, { secret: SECRET, peerTimeoutMs: 5000, groupCommitMs: 0, divergencePolicy: 'keep' }, silentLogger())
  const ended = session.run().then(() => null, (err: Error) => err)
  t.teardown(async () => {
    await primary.close()
    await ended
    await new Promise((r) => server.close(r))
    store.close()
  })
  const fake = { meta: { volumeId: VOL, nodeId: 'a', blockSize: BS, size: BLOCKS * BS, role: 'primary', epochs: [{ epoch: 1, nodeId: 'a', startSeq: 1 }], headSeq: 0, journalTail: 1, consistent: true, syncedOnce: true, resyncRemaining: null, cleanShutdown: true, peers: {} } }
  await helloAndAuth(primary, fake as unknown as Store, SECRET, true, 'b')
  const send = (m: Message, p?: Buffer) => primary.send(m, p)
  const next = async (type: Frame['msg']['type']): Promise<Frame> => {
    for (;;) {
      const f = await primary.next(5000)
      if (f.msg.type === type) return f
      if (f.msg.type !== 'BLOCKS_ACK' && f.msg.type !== 'ACK') throw new Error(`expected ${type}, got ${f.msg.type}`)
    }
  }
  return { store, primary, session, ended, send, next, fake }
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached')
    await new Promise((r) => setTimeout(r, 10))
  }
}

type S = Awaited<ReturnType<typeof setup>>

async function handshake(s: S, mode: 'FULL' | 'HEAD_DELTA', headSeq: number): Promise<void> {
  s.send({ type: 'META', meta: { ...s.fake.meta, role: 'primary', headSeq, metaCorrupt: false } as never })
  await expectFrame(s.primary, 'META')
  s.send({ type: 'MODE', mode, reason: 'test', blocks: BLOCKS, bytes: BLOCKS * BS, epochs: s.fake.meta.epochs, branchSeq: null, checksum: false })
  await s.next('MODE_ACCEPT')
}

const blockData = (b: number, v: number): Buffer => Buffer.alloc(BS, (b * 16 + v) & 0xff)
const write = (seq: number, block: number, v: number, crc?: number): [Message, Buffer] => {
  const p = blockData(block, v)
  return [{ type: 'WRITE', seq, epoch: 1, offset: block * BS, length: BS, zero: false, crc: crc ?? crc32c(p) }, p]
}

t.test('standby-session - FULL: consistent only after SYNC_DONE and every block applied; then WRITEs are acked once durable', async (t) => {
  const s = await setup(t)
  await handshake(s, 'FULL', 5)
  t.equal(s.session.state, 'syncing')
  s.send({ type: 'ROUND_BEGIN', round: 1, mode: 'FULL', blocks: BLOCKS, frozenSeq: 5, bitmap: null })
  const all = Buffer.concat(Array.from({ length: BLOCKS }, (_, b) => blockData(b, 1)))
  s.send({ type: 'BLOCKS', round: 1, runs: encodeRuns([[0, BLOCKS / 2]]), crc: crc32c(all.subarray(0, all.length / 2)) }, all.subarray(0, all.length / 2))
  await until(() => s.session.round?.applied === BLOCKS / 2)
  t.notOk(s.store.meta.consistent, 'not consistent in the middle of the round')
  t.ok(s.store.meta.resyncRemaining !== null, 'an interrupted round would resume from the persisted remaining set')
  s.send({ type: 'BLOCKS', round: 1, runs: encodeRuns([[BLOCKS / 2, BLOCKS / 2]]), crc: crc32c(all.subarray(all.length / 2)) }, all.subarray(all.length / 2))
  s.send({ type: 'ROUND_END', round: 1 })
  let ack = await s.next('BLOCKS_ACK')
  while (ack.msg.type === 'BLOCKS_ACK' && ack.msg.applied < BLOCKS) ack = await s.next('BLOCKS_ACK')
  t.match(ack.msg, { round: 1, applied: BLOCKS }, 'every block acknowledged')
  s.send({ type: 'SYNC_DONE', headSeq: 5 })
  const [m, p] = write(6, 3, 9)
  s.send(m, p)
  let a = await s.next('ACK')
  while (a.msg.type === 'ACK' && a.msg.seq < 6) a = await s.next('ACK')
  t.match(a.msg, { seq: 6 }, 'the WRITE after sync is acked')
  t.ok(s.store.meta.consistent, 'consistent after SYNC_DONE')
  t.equal(s.store.meta.volumeId, VOL, "a standby made without a volume id adopted the primary's")
  t.equal(s.store.headSeq, 6)
  t.same(s.store.volume.read(3 * BS, BS), blockData(3, 9), 'the write applied')
  t.same(s.store.volume.read(4 * BS, BS), blockData(4, 1), 'the resync blocks applied')
})

t.test('standby-session - a WRITE out of order ends the session with ERR_PROTOCOL and applies nothing', async (t) => {
  const s = await setup(t)
  await handshake(s, 'HEAD_DELTA', 0)
  const [m, p] = write(2, 1, 1)
  s.send(m, p)
  const err = await s.ended
  t.match(err, { code: 'ERR_PROTOCOL' })
  t.equal(s.store.headSeq, 0, 'no seq taken')
  t.same(s.store.volume.read(BS, BS), Buffer.alloc(BS), 'no data written')
})

t.test('standby-session - a WRITE whose payload fails its crc is refused before anything is applied', async (t) => {
  const s = await setup(t)
  await handshake(s, 'HEAD_DELTA', 0)
  const [m, p] = write(1, 2, 1, 12345)
  s.send(m, p)
  const err = await s.ended
  t.match(err, { code: 'ERR_CRC_MISMATCH' })
  t.equal(s.store.headSeq, 0)
  t.same(s.store.volume.read(2 * BS, BS), Buffer.alloc(BS))
})

t.test('standby-session - BLOCKS outside a round are a protocol error', async (t) => {
  const s = await setup(t)
  await handshake(s, 'FULL', 0)
  const p = blockData(0, 1)
  s.send({ type: 'BLOCKS', round: 1, runs: encodeRuns([[0, 1]]), crc: crc32c(p) }, p)
  t.match(await s.ended, { code: 'ERR_PROTOCOL' })
  t.notOk(s.store.meta.consistent, 'never consistent')
})
