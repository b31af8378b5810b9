import t from 'tap'
import type { Test } from 'tap'
import path from 'node:path'
import { NodeStore, defaultPaths } from '../src/replication/node-store.js'
import { WritePath } from '../src/replication/write-path.js'
import type { WriteListener } from '../src/replication/write-path.js'
import { Volume } from '../src/storage/volume.js'
import { BlockrepError } from '../src/util/errors.js'
import { nbdErrno } from '../src/nbd/errno.js'
import { Errno } from '../src/nbd/constants.js'
import { silentLogger } from '../src/util/log.js'
import type { JournalRecord } from '../src/storage/types.js'
import { FaultyFile } from './helpers/faulty-volume.js'

const BS = 4096

function primary(t: Test) {
  const paths = defaultPaths(path.join(t.testdir(), 'a.img'))
  NodeStore.init({ ...paths, nodeId: 'a', size: 64 * BS, blockSize: BS, journalSize: 1 << 20, role: 'primary', volumeId: 'v' })
  const store = NodeStore.open(paths)
  const wp = new WritePath(store, silentLogger())
  const sent: number[] = []
  const listener: WriteListener = { nodeId: 'b', onAppend: (r: JournalRecord) => void sent.push(r.seq), waitDurable: async () => {}, ackedSeq: () => 0 }
  wp.addListener(listener)
  const faults = new FaultyFile(paths.data)
  t.teardown(() => {
    faults.restore()
    try {
      store.close()
    } catch {
      // a test may have closed it
    }
  })
  return { paths, store, wp, sent, faults }
}

const block = (n: number): Buffer => Buffer.alloc(BS, n)

async function outcome(p: Promise<unknown>): Promise<BlockrepError | 'ok'> {
  try {
    await p
    return 'ok'
  } catch (err) {
    if (err instanceof BlockrepError) return err
    throw err
  }
}

t.test('faulty volume - the helper fails, tears and fills writes on one file only', async (t) => {
  const dir = t.testdir()
  const v = Volume.open(path.join(dir, 'v'), { blockSize: BS, size: 16 * BS, create: true })
  const other = Volume.open(path.join(dir, 'w'), { blockSize: BS, size: 16 * BS, create: true })
  const f = new FaultyFile(path.join(dir, 'v'))
  t.teardown(() => {
    f.restore()
    v.close()
    other.close()
  })
  f.failWrites(1)
  t.throws(() => v.write(0, block(1)), { code: 'ERR_NO_SPACE' }, 'ENOSPC becomes ERR_NO_SPACE')
  t.same(v.read(0, BS), block(0), 'nothing written')
  other.write(0, block(9))
  t.same(other.read(0, BS), block(9), 'another file is unaffected')
  f.tearNextWrite(100)
  t.throws(() => v.write(0, block(2)), { code: 'ERR_IO' }, 'a torn write fails with ERR_IO')
  t.same(v.read(0, 100), Buffer.alloc(100, 2), 'its first bytes landed')
  t.same(v.read(100, BS - 100), Buffer.alloc(BS - 100, 0), 'the rest did not')
  f.fullAfter(2 * BS)
  v.write(0, block(3))
  v.write(BS, block(3))
  t.throws(() => v.write(2 * BS, block(3)), { code: 'ERR_NO_SPACE' }, 'the disk fills after its budget')
  f.fullAfter(null).failSyncs(2)
  t.throws(() => v.flushSync(), { code: 'ERR_IO' }, 'a failed fdatasync is ERR_IO')
  await t.rejects(v.flush(), { code: 'ERR_IO' }, 'also the async one')
  await v.flush()
  t.pass('and syncs work again after the injected failures')
})

t.test('faulty volume - a data write that fails with ENOSPC is not acknowledged, gives ERR_NO_SPACE (ENOSPC over NBD), and the volume keeps working', async (t) => {
  const { wp, faults, store } = primary(t)
  t.equal(await outcome(wp.write(0, BS, block(1))), 'ok', 'a first write succeeds')
  faults.failWrites(1, 'ENOSPC')
  const err = await outcome(wp.write(BS, BS, block(2)))
  t.not(err, 'ok', 'the write with a failed data write is not acknowledged')
  t.equal((err as BlockrepError).code, 'ERR_NO_SPACE', 'a clear typed error')
  t.match((err as BlockrepError).message, /no space/, `and a message that says so: ${(err as BlockrepError).message}`)
  t.equal(nbdErrno(err), Errno.ENOSPC, 'an NBD client gets ENOSPC')
  t.equal(await outcome(wp.write(2 * BS, BS, block(3))), 'ok', 'once space is back, writes succeed again')
  t.same(store.volume.read(2 * BS, BS), block(3))
})

t.test('faulty volume - a torn data write fails with ERR_IO and is not acknowledged', async (t) => {
  const { wp, faults } = primary(t)
  faults.tearNextWrite(BS / 2)
  const err = await outcome(wp.write(0, BS, block(7)))
  t.not(err, 'ok', 'not acknowledged')
  t.equal((err as BlockrepError).code, 'ERR_IO')
  t.equal(nbdErrno(err), Errno.EIO, 'an NBD client gets EIO')
})

// Known bug (found by this test, reported, not fixed here: write-path.ts is being reworked on the
// journal branch): WritePath appends the record to the journal, then the data write fails, and the
// record is never handed to the links. The standbys see seq N-1 then N+1, and after a restart the
// primary replays N from its journal: its data then holds a write no standby was sent.
t.test('faulty volume - after a failed data write, what the standbys are sent and what the primary replays agree', { todo: 'bug: a journaled record whose data write failed is never shipped, yet replayed at restart' }, async (t) => {
  const { wp, faults, store, sent, paths } = primary(t)
  await wp.write(0, BS, block(1))
  faults.failWrites(1, 'ENOSPC')
  await outcome(wp.write(BS, BS, block(2)))
  await wp.write(2 * BS, BS, block(3))
  const head = store.headSeq
  // every seq the primary holds in its journal must reach the standbys, or none of its content may survive a restart
  const inJournal = [...store.journal.read(store.journal.tailSeq, head)].map((r) => r.seq)
  faults.restore()
  store.close()
  const again = NodeStore.open(paths)
  const replayedBlock1 = again.volume.read(BS, BS)
  again.close()
  const shipped = new Set(sent)
  const unshipped = inJournal.filter((s) => !shipped.has(s))
  if (unshipped.length > 0) {
    t.same(replayedBlock1, block(0), `seqs ${unshipped.join(',')} were journaled but never sent to the standbys: their data must not appear on the primary after a restart`)
  } else {
    t.pass('every journaled seq was sent to the standbys')
  }
  t.same(sent, [...sent].sort((a, b) => a - b), 'seqs are sent in order')
  for (let i = 1; i < sent.length; i++) if (sent[i] !== sent[i - 1] + 1) t.fail(`the standbys see a gap in seqs: ${sent[i - 1]} then ${sent[i]}`)
})

t.test('faulty volume - a journal write that fails is not acknowledged and gives a typed error', async (t) => {
  const { wp, store, paths, sent } = primary(t)
  await wp.write(0, BS, block(1))
  const jf = new FaultyFile(paths.journal)
  t.teardown(() => jf.restore())
  jf.failWrites(1, 'ENOSPC')
  const head = store.headSeq
  const err = await outcome(wp.write(BS, BS, block(2)))
  t.not(err, 'ok', 'not acknowledged')
  t.ok(err instanceof BlockrepError && /^ERR_/.test(err.code), `a typed error: ${err instanceof BlockrepError ? `${err.code} ${err.message}` : err}`)
  t.same(store.volume.read(BS, BS), block(0), 'the data write did not happen (write-ahead: journal first)')
  t.same(sent, [head], 'nothing was sent to the standbys for it')
  jf.restore()
  t.equal(await outcome(wp.write(2 * BS, BS, block(3))), 'ok', 'the next write succeeds once the disk has room')
  t.same(sent, [head, head + 1], 'with the next seq: no gap for the standbys, no seq reused')
})
