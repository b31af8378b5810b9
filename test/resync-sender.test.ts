import t from 'tap'
import type { Test } from 'tap'
import path from 'node:path'
import { NodeStore, defaultPaths } from '../src/replication/node-store.js'
import { WritePath } from '../src/replication/write-path.js'
import { ResyncSender, runs } from '../src/replication/resync-sender.js'
import type { ResyncTunables } from '../src/replication/resync-sender.js'
import type { FrameTransport } from '../src/wire/transport.js'
import { decodeRuns } from '../src/wire/messages.js'
import type { Message } from '../src/wire/messages.js'
import { bitmaps } from '../src/storage/bitmaps.js'
import { silentLogger } from '../src/util/log.js'

const BS = 4096
const BLOCKS = 256

t.test('resync-sender - runs() splits ascending blocks into contiguous runs no longer than max', async (t) => {
  t.same([...runs([], 4)], [])
  t.same([...runs([7], 4)], [[7, 1]])
  t.same([...runs([1, 2, 3, 5, 6, 9], 8)], [[1, 3], [5, 2], [9, 1]])
  t.same([...runs([0, 1, 2, 3, 4, 5, 6], 3)], [[0, 3], [3, 3], [6, 1]], 'a long run is cut at max')
})

interface Round {
  round: number
  frozenSeq: number
  blocks: number[]
  throttledAtStart: boolean
}

/**
 * A primary store, its write path, and a sender over a fake transport whose
 * standby applies BLOCKS to an in-memory copy and acknowledges them at once.
 * `duringRound(k)` runs when round k's first BLOCKS frame goes out: client
 * writes made there race the round.
 */
function setup(t: Test, opts: { journalSize?: number; tunables?: Partial<ResyncTunables> } = {}) {
  const dir = t.testdir()
  const paths = defaultPaths(path.join(dir, 'a.img'))
  NodeStore.init({ ...paths, nodeId: 'a', size: BLOCKS * BS, blockSize: BS, journalSize: opts.journalSize ?? 4 << 20, role: 'primary', volumeId: 'v' })
  const store = NodeStore.open(paths)
  t.teardown(() => store.close())
  const wp = new WritePath(store, silentLogger())
  const standby = Buffer.alloc(BLOCKS * BS)
  const rounds: Round[] = []
  const duringRound = new Map<number, () => void>()
  let sender: ResyncSender | null = null
  const fake = {
    send(msg: Message, payload?: Uint8Array): boolean {
      if (msg.type === 'ROUND_BEGIN') {
        const blocks = msg.bitmap ? bitmaps().deserialize(msg.bitmap).toArray() : []
        rounds.push({ round: msg.round, frozenSeq: msg.frozenSeq, blocks, throttledAtStart: wp.throttled })
      } else if (msg.type === 'BLOCKS') {
        const hook = duringRound.get(msg.round)
        duringRound.delete(msg.round)
        hook?.()
        let at = 0
        let n = 0
        for (const [block, count] of decodeRuns(msg.runs)) {
          Buffer.from(payload!).copy(standby, block * BS, at, at + count * BS)
          at += count * BS
          n += count
        }
        applied += n
        const ack = { msg: { type: 'BLOCKS_ACK' as const, round: msg.round, applied }, payload: Buffer.alloc(0) }
        setImmediate(() => sender!.handle(ack))
      } else if (msg.type === 'ROUND_END') {
        applied = 0
      }
      return true
    },
    drained: async () => {},
  }
  let applied = 0
  const tun: ResyncTunables = { windowBytes: 64 * BS, headDeltaMaxBytes: 0, roundShrinkRatio: 0.5, throttleWritesMiBps: 1000, digestRangeBlocks: 16, maxRounds: 30, resyncMaxMiBps: 0, ...opts.tunables }
  sender = new ResyncSender(fake as unknown as FrameTransport, store, wp, tun, { begin() {}, blocksDone() {} }, silentLogger(), 'b')
  const s = sender
  wp.addListener({ nodeId: 'b', onAppend() {}, waitDurable: async () => {}, ackedSeq: () => 0, onEvicted: (ev) => s.noteEvicted(ev) })
  /** client write of one block with a content unique to (block, n) */
  let n = 0
  const write = (block: number): void => {
    const data = Buffer.alloc(BS, ++n & 0xff)
    data.writeUInt32BE(block, 0)
    data.writeUInt32BE(n, 4)
    void wp.write(block * BS, BS, data)
  }
  const primaryBlock = (b: number): Buffer => store.volume.read(b * BS, BS)
  const same = (blocks: Iterable<number>): number[] => [...blocks].filter((b) => !primaryBlock(b).equals(standby.subarray(b * BS, (b + 1) * BS)))
  return { store, wp, sender, rounds, duringRound, write, same }
}

type Setup = ReturnType<typeof setup>

function initialSet(s: Setup, blocks: number[]) {
  for (const b of blocks) s.write(b)
  const bm = bitmaps().create()
  for (const b of blocks) bm.add(b)
  return bm
}

t.test('resync-sender - the next round sends exactly the blocks written during the previous one, frozen at its head', async (t) => {
  const s = setup(t)
  const first = [3, 4, 5, 100, 200]
  const set = initialSet(s, first)
  const covered = s.store.headSeq
  const racing = [4, 7, 150, 150, 151]
  s.duringRound.set(1, () => racing.forEach((b) => s.write(b)))
  const from = await s.sender.run(set, 'BITMAP', false, covered)
  t.equal(s.rounds.length, 2, 'two rounds: the writes during round 1 left a gap')
  t.same(s.rounds[0], { round: 1, frozenSeq: covered, blocks: first, throttledAtStart: false }, 'round 1: the initial set, frozen where it was computed')
  t.same(s.rounds[1].blocks, [4, 7, 150, 151], 'round 2: exactly the blocks the racing writes touched (B_{k+1} from the gap)')
  t.equal(s.rounds[1].frozenSeq, covered + racing.length, 'round 2 froze at the head after the racing writes')
  t.equal(from, covered + racing.length, 'streaming continues after the last frozen head')
  t.same(s.same([...first, ...racing]), [], 'the standby copy holds the current content of every block sent')
})

t.test('resync-sender - a gap small enough ends the rounds without another one', async (t) => {
  const s = setup(t, { tunables: { headDeltaMaxBytes: 2 * BS } })
  const set = initialSet(s, [1, 2, 3])
  const covered = s.store.headSeq
  s.duringRound.set(1, () => [9, 10].forEach((b) => s.write(b)))
  const from = await s.sender.run(set, 'BITMAP', false, covered)
  t.equal(s.rounds.length, 1, 'one round: the 2-record gap is replayed as HEAD_DELTA')
  t.equal(from, covered, 'streaming (HEAD_DELTA) starts after g_1, so the racing writes are replayed')
})

t.test('resync-sender - records reclaimed from the journal during a round still reach the next round', async (t) => {
  // a 64 KiB journal holds a handful of 4 KiB records: the racing writes wrap it
  const s = setup(t, { journalSize: 64 * 1024 })
  const set = initialSet(s, [1])
  const covered = s.store.headSeq
  const racing = Array.from({ length: 40 }, (_, i) => 20 + i)
  s.duringRound.set(1, () => racing.forEach((b) => s.write(b)))
  await s.sender.run(set, 'BITMAP', false, covered)
  t.ok(s.store.journal.tailSeq > covered + 1, `the journal wrapped past g_1 (tail ${s.store.journal.tailSeq})`)
  t.same(s.rounds[1]?.blocks, racing, 'round 2 holds every racing block, the reclaimed ones included')
  t.same(s.same(racing), [], 'and the standby got their current content')
})

t.test('resync-sender - a round whose gap does not shrink throttles client writes', async (t) => {
  const s = setup(t)
  const set = initialSet(s, [1, 2])
  const covered = s.store.headSeq
  s.duringRound.set(1, () => [10, 11, 12, 13].forEach((b) => s.write(b)))
  // round 2's gap (4 records) is not under half of round 1's (4): throttle
  s.duringRound.set(2, () => [20, 21, 22, 23].forEach((b) => s.write(b)))
  await s.sender.run(set, 'BITMAP', false, covered)
  t.same(s.rounds.map((r) => r.throttledAtStart), [false, false, true], 'not throttled while gaps shrink; throttled from round 3 on')
  t.ok(s.wp.throttled, 'the throttle stays until the link lifts it')
})

t.test('resync-sender - maxRounds forces the throttle even while gaps shrink', async (t) => {
  const s = setup(t, { tunables: { maxRounds: 2, roundShrinkRatio: 1 } })
  const set = initialSet(s, [1])
  const covered = s.store.headSeq
  s.duringRound.set(1, () => [10, 11, 12, 13].forEach((b) => s.write(b)))
  s.duringRound.set(2, () => [20].forEach((b) => s.write(b)))
  await s.sender.run(set, 'BITMAP', false, covered)
  t.same(s.rounds.map((r) => r.throttledAtStart), [false, false, true], 'throttled after round 2 = maxRounds')
})
