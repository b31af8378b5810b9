import t from 'tap'
import type { Test } from 'tap'
import path from 'node:path'
import { NodeStore, defaultPaths } from '../src/replication/node-store.js'
import { WritePath } from '../src/replication/write-path.js'
import type { WriteListener } from '../src/replication/write-path.js'
import { blocksSince, journalGap } from '../src/replication/facts.js'
import { silentLogger } from '../src/util/log.js'
import type { JournalRecord } from '../src/storage/types.js'

const BS = 4096

/** A primary store in a temp dir (real files), its write path, and a peer 'b' that records what it is sent. */
function setup(t: Test, journalSize = 1 << 20) {
  const paths = defaultPaths(path.join(t.testdir(), 'a.img'))
  NodeStore.init({ ...paths, nodeId: 'a', size: 256 * BS, blockSize: BS, journalSize, role: 'primary', volumeId: 'v' })
  const store = NodeStore.open(paths)
  t.teardown(() => store.close())
  const wp = new WritePath(store, silentLogger())
  const peer = store.peer('b')
  peer.bitmapValid = true
  let acked = 0
  const durable: { seq: number; resolve: () => void }[] = []
  const sent: number[] = []
  const listener: WriteListener = {
    nodeId: 'b',
    onAppend: (r: JournalRecord) => void sent.push(r.seq),
    waitDurable: (seq) => (seq <= acked ? Promise.resolve() : new Promise((resolve) => durable.push({ seq, resolve }))),
    ackedSeq: () => acked,
  }
  wp.addListener(listener)
  const ack = (seq: number): void => {
    acked = seq
    for (const d of durable.splice(0)) if (d.seq <= seq) d.resolve()
      else durable.push(d)
  }
  return { paths, store, wp, sent, ack, peer }
}

const block = (n: number): Buffer => Buffer.alloc(BS, n)

t.test('write-path - a write is acknowledged only once the sync peer has it durable (invariant 2), with seqs in order', async (t) => {
  const { wp, sent, ack, store } = setup(t)
  let done = false
  const p = wp.write(0, BS, block(1)).then((seq) => {
    done = true
    return seq
  })
  await new Promise((r) => setTimeout(r, 50))
  t.notOk(done, 'not acknowledged while the sync peer has not confirmed')
  t.same(sent, [1], 'the record went to the peer at once')
  t.same(store.volume.read(0, BS), block(1), 'and to the local data')
  ack(1)
  t.equal(await p, 1, 'acknowledged with its seq once the peer confirms')
  const [s2, s3] = await Promise.all([wp.write(BS, BS, block(2)).then((s) => s), (async () => {
    const q = wp.write(2 * BS, BS, null)
    setTimeout(() => ack(3), 10)
    return q
  })()])
  t.same([s2, s3], [2, 3], 'seqs strictly increase')
  t.same(sent, [1, 2, 3])
  t.same(store.volume.read(2 * BS, BS), block(0), 'a zero write (null data) zeroes')
})

t.test('write-path - journal reclaim puts the blocks of records the peer has not acked into its dirty bitmap (invariant 1)', async (t) => {
  // a 64 KiB journal holds a dozen 4 KiB records: 40 writes force reclaims
  const { wp, ack, store, peer } = setup(t, 64 * 1024)
  ack(5)
  const written: number[] = []
  for (let i = 0; i < 40; i++) {
    const b = (i * 7) % 256
    written.push(b)
    // the peer stays at seq 5: these writes stay unacknowledged
    void wp.write(b * BS, BS, block(i))
  }
  await new Promise((r) => setTimeout(r, 20))
  const tail = store.journal.tailSeq
  t.ok(tail > 6, `the journal reclaimed records (tail ${tail})`)
  const mustBeDirty = written.slice(5, tail - 1) // seqs 6..tail-1 left the journal unacked
  const missing = mustBeDirty.filter((b) => !peer.dirty.has(b))
  t.same(missing, [], `every block of a reclaimed unacked record is in the dirty bitmap (${mustBeDirty.length} records)`)
  const notNeeded = written.slice(0, 5).filter((b) => !written.slice(5).includes(b) && peer.dirty.has(b))
  t.same(notNeeded, [], 'records the peer acked before reclaim are not marked dirty')
  const since = blocksSince(store, peer, 5)
  t.ok(since !== null, 'facts: the blocks since the peer head are known (dirty bitmap + journal)')
  t.same(written.slice(5).filter((b) => !since!.has(b)), [], 'and include every block written after seq 5')
  t.equal(journalGap(store, 5), null, 'facts: the journal no longer holds everything after seq 5')
  t.match(journalGap(store, store.headSeq - 2), { records: 2, bytes: 2 * BS }, 'facts: the last two records are a 2-record gap')
  t.equal(blocksSince(store, { ...peer, bitmapValid: false }, 5), null, 'facts: unknown without a valid bitmap')
})

t.test('write-path - throttle: the slowest peer request wins, lifting one keeps the other', async (t) => {
  const { wp } = setup(t)
  t.notOk(wp.throttled)
  wp.setThrottle('b', 10 * 1024 * 1024)
  wp.setThrottle('c', 1024 * 1024)
  t.ok(wp.throttled)
  wp.setThrottle('c', 0)
  t.ok(wp.throttled, "b's throttle still holds after c lifts its own")
  wp.setThrottle('b', 0)
  t.notOk(wp.throttled, 'off once no peer asks')
})

t.test('write-path - a refused write (role, lease, shutdown) never reaches the journal', async (t) => {
  const { wp, store, sent } = setup(t)
  const { BlockrepError } = await import('../src/util/errors.js')
  wp.setWritableCheck(() => new BlockrepError('ERR_NOT_PRIMARY', 'demoted'))
  await t.rejects(wp.write(0, BS, block(1)), { code: 'ERR_NOT_PRIMARY' })
  t.equal(store.headSeq, 0, 'no seq taken')
  t.same(sent, [], 'nothing sent')
  wp.setWritableCheck(() => null)
  await t.rejects(wp.write(255 * BS, 2 * BS, block(1)), { code: 'ERR_NO_SPACE' }, 'a write past the end is refused')
})
