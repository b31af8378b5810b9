import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { Journal } from '../src/storage/journal.js'
import { RING_BASE } from '../src/storage/journal-format.js'
import type { JournalRecord } from '../src/storage/types.js'

const MiB = 1024 * 1024

function rec(seq: number, length: number, epoch = 1): JournalRecord {
  return { seq, epoch, offset: 0, length, data: Buffer.alloc(length, seq) }
}

/**
 * Issue 7: a reclaim that empties the ring wrote a checkpoint at the old write
 * position; the next record landed at 0 and the recovery scan counted the
 * skipped gap as used, dropping the newest record on reopen.
 */
t.test('journal - a record after a reclaim that emptied the ring survives reopen', async (t) => {
  const p = path.join(t.testdir(), 'j')
  const j = Journal.open(p, { size: 4 * MiB, create: true })
  j.onReclaim = () => {}
  j.append(rec(1, 512))
  j.append(rec(2, 2096640))
  j.append(rec(3, 2096640))
  j.append(rec(4, 1024))
  j.syncSync()
  const used = j.used
  j.close()
  const k = Journal.open(p, {})
  t.equal(k.headSeq, 4, 'head is the last appended record')
  t.equal(k.tailSeq, 3)
  t.equal(k.used, used, 'reopened journal measures the same use')
  t.ok(k.readOne(4).data!.equals(Buffer.alloc(1024, 4)), 'newest record reads back')
  // and it keeps accepting records up to the ring's end without losing any
  k.append(rec(5, 4096))
  k.syncSync()
  k.close()
  const m = Journal.open(p, {})
  t.equal(m.headSeq, 5)
  m.close()
})

t.test('journal - an empty journal whose first record wraps to 0 keeps every record on reopen', async (t) => {
  const p = path.join(t.testdir(), 'j')
  const KiB = 1024
  const j = Journal.open(p, { size: 64 * KiB, create: true })
  j.onReclaim = () => {}
  for (let s = 1; s <= 3; s++) j.append(rec(s, 20 * KiB)) // 0 .. 61.5 KiB
  j.append(rec(4, 8 * KiB)) // wraps to 0, evicting seq 1
  j.append(rec(5, 45 * KiB)) // evicts everything: the ring is empty, seq 5 goes at 8.5 KiB
  t.equal(j.tailSeq, 5)
  // empty the journal without a reclaim: the checkpoint still names 8.5 KiB
  j.truncateAfter(4)
  j.append(rec(5, 60 * KiB)) // does not fit at 8.5 KiB: goes to 0, no reclaim needed
  j.append(rec(6, 2 * KiB))
  j.syncSync()
  t.equal(j.tailSeq, 5, 'nothing was reclaimed')
  j.close()
  const k = Journal.open(p, {})
  t.equal(k.headSeq, 6, 'every record recovered')
  t.equal(k.tailSeq, 5)
  k.close()
})

t.test('journal - random sizes near the ring size never lose the head on reopen', async (t) => {
  const ring = 1 * MiB
  let seed = 12345
  const next = (): number => {
    seed = (seed * 1103515245 + 12345) >>> 0
    return seed / 2 ** 32
  }
  const dir = t.testdir()
  let lost = 0
  for (let trial = 0; trial < 25; trial++) {
    const p = path.join(dir, `j${trial}`)
    const j = Journal.open(p, { size: ring, create: true })
    j.onReclaim = () => {}
    let seq = 0
    for (let i = 0; i < 6; i++) j.append(rec(++seq, Math.floor(next() * (ring - 1024))))
    j.syncSync()
    j.close()
    const k = Journal.open(p, {})
    if (k.headSeq !== seq) lost++
    k.close()
  }
  t.equal(lost, 0, 'no reopen lost its head (seed 12345)')
})

t.test('journal - a record re-appended identically after truncateAfter does not bring back the records cut after it', async (t) => {
  const p = path.join(t.testdir(), 'j')
  const j = Journal.open(p, { size: 64 * 1024, create: true })
  for (let s = 1; s <= 3; s++) j.append(rec(s, 512))
  j.truncateAfter(0)
  j.append(rec(1, 512)) // the same seq, content and place as the one cut
  j.syncSync()
  j.close()
  const k = Journal.open(p, {})
  t.equal(k.headSeq, 1, 'seqs 2 and 3 stay cut')
  k.close()
})

t.test('journal - after a crash that lost a record, an identical re-append does not chain onto the stale records behind it', async (t) => {
  const p = path.join(t.testdir(), 'j')
  const j = Journal.open(p, { size: 64 * 1024, create: true })
  j.append(rec(1, 512))
  j.syncSync()
  j.append(rec(2, 512))
  j.append(rec(3, 512))
  j.close()
  // the crash: seq 2's first sector never reached the disk, seq 3 did
  const fd = fs.openSync(p, 'r+')
  fs.writeSync(fd, Buffer.alloc(512), 0, 512, RING_BASE + 1024)
  fs.closeSync(fd)
  const k = Journal.open(p, {})
  t.equal(k.headSeq, 1, 'recovered up to seq 1')
  k.append(rec(2, 512)) // the primary resends the same seq 2
  k.syncSync()
  k.close()
  const m = Journal.open(p, {})
  t.equal(m.headSeq, 2, 'the stale seq 3 from before the crash is not resurrected')
  m.close()
})
