import t, { type Test } from 'tap'
import path from 'node:path'
import { silentLogger } from '../src/util/log.js'
import { NodeStore, defaultPaths } from '../src/replication/node-store.js'
import { WritePath } from '../src/replication/write-path.js'
import type { WriteListener } from '../src/replication/write-path.js'
import type { JournalRecord } from '../src/storage/types.js'

const KiB = 1024
const MiB = 1024 * KiB

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len)
  for (let i = 0; i < len; i += 4) b.writeUInt32LE((seed * 2654435761 + i * 40503) >>> 0, i)
  return b
}

function openStore(t: Test, journalSize: number): NodeStore {
  const paths = defaultPaths(path.join(t.testdir(), 'vol.img'))
  NodeStore.init({ ...paths, nodeId: 'a', size: 8 * MiB, blockSize: 4096, journalSize, role: 'primary', volumeId: 'v' })
  const store = NodeStore.open(paths)
  t.teardown(() => store.close())
  return store
}

t.test('write-path split - a write larger than the record limit becomes consecutive records that each fit, in order, with every byte', async (t) => {
  const store = openStore(t, 1 * MiB)
  const wp = new WritePath(store, silentLogger())
  const sent: JournalRecord[] = []
  const listener: WriteListener = { nodeId: 'b', onAppend: (r) => sent.push(r), waitDurable: async () => {}, ackedSeq: () => 0 }
  wp.addListener(listener)
  const data = pattern(3 * MiB + 4096 + 512, 7)
  const last = await wp.write(1 * MiB + 512, data.length, data)
  const limit = store.journal.recordLimit
  t.equal(limit, 256 * KiB, 'record limit of a 1 MiB journal')
  t.equal(sent.length, Math.ceil(data.length / limit), 'one record per piece')
  t.equal(last, sent[sent.length - 1].seq, 'write returns the last seq')
  sent.forEach((r, i) => {
    if (r.seq !== i + 1 || r.offset !== 1 * MiB + 512 + i * limit || r.length > limit) t.fail(`record ${i}: seq ${r.seq} offset ${r.offset} length ${r.length}`)
  })
  t.ok(Buffer.concat(sent.map((r) => r.data!)).equals(data), 'the records carry the write, byte for byte')
  t.ok(store.volume.read(1 * MiB + 512, data.length).equals(data), 'the volume holds it')
  t.equal(store.journal.headSeq, last, 'journal head is the last record')
  // the journal (1 MiB) could not hold the whole write: the records it still holds read back
  for (const r of store.journal.read(store.journal.tailSeq, last)) {
    t.ok(r.data!.equals(sent[r.seq - 1].data!), `journal record ${r.seq} reads back`)
  }
  const z = await wp.write(0, 5 * MiB, null)
  t.equal(z, last + 1, 'a zero-fill stays one header-only record')
  t.ok(store.volume.read(0, 5 * MiB).equals(Buffer.alloc(5 * MiB)), 'zeroed')
  const e = await wp.write(100, 0, Buffer.alloc(0))
  t.equal(e, last + 2, 'an empty write is one empty record')
})

t.test('write-path split - a write larger than a quarter of the journal waits for sync peers between groups', async (t) => {
  const store = openStore(t, 1 * MiB)
  const wp = new WritePath(store, silentLogger())
  const waited: number[] = []
  let appendedBeforeFirstWait = -1
  const listener: WriteListener = {
    nodeId: 'b',
    onAppend: () => {},
    waitDurable: async (seq) => {
      if (waited.length === 0) appendedBeforeFirstWait = store.journal.headSeq
      waited.push(seq)
    },
    ackedSeq: () => store.journal.headSeq,
  }
  wp.addListener(listener)
  await wp.write(0, 2 * MiB, pattern(2 * MiB, 3))
  t.equal(appendedBeforeFirstWait, 1, 'the first group (a quarter of the journal, one 256 KiB record) is durable on the peer before the next is appended')
  t.same(waited, [1, 2, 3, 4, 5, 6, 7, 8], 'every group waited for, the last one as the whole write')
})
