import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { testSeed } from './helpers/seed.js'
import { Journal, replayJournal } from '../src/storage/journal.js'
import { Volume } from '../src/storage/volume.js'
import { RING_BASE, SUPER_SLOT_SIZE } from '../src/storage/journal-format.js'
import type { JournalEntryInfo, JournalRecord } from '../src/storage/types.js'

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s / 0x100000000
  }
}

function rec(seq: number, length: number, opts: { zero?: boolean; offset?: number; epoch?: number } = {}): JournalRecord {
  return {
    seq,
    epoch: opts.epoch ?? 1,
    offset: opts.offset ?? seq * 512,
    length,
    data: opts.zero ? null : randomBytes(length),
  }
}

function same(t: Test, got: JournalRecord, want: JournalRecord, msg: string): void {
  t.same({ ...got, data: null }, { ...want, data: null }, `${msg}: header`)
  if (want.data === null) t.equal(got.data, null, `${msg}: zero record`)
  else t.ok(got.data !== null && got.data.equals(want.data), `${msg}: payload`)
}

t.test('journal - append, read, entries and reopen', async t => {
  const p = path.join(t.testdir(), 'j')
  const j = Journal.open(p, { size: 64 * 1024, create: true })
  t.equal(j.headSeq, 0)
  t.equal(j.tailSeq, 1)
  t.equal(j.capacity, 64 * 1024)
  t.equal(j.used, 0)
  const recs = [rec(1, 4096), rec(2, 100), rec(3, 0), rec(4, 8192, { zero: true }), rec(5, 513)]
  j.append(recs[0])
  j.appendMany(recs.slice(1))
  t.equal(j.headSeq, 5)
  t.ok(j.has(1) && j.has(5) && !j.has(0) && !j.has(6))
  t.same(j.entries(2, 4), [
    { seq: 2, epoch: 1, offset: 1024, length: 100, zero: false },
    { seq: 3, epoch: 1, offset: 1536, length: 0, zero: false },
    { seq: 4, epoch: 1, offset: 2048, length: 8192, zero: true },
  ])
  t.same(j.entries(3, 2), [])
  const got = [...j.read(1, 5)]
  recs.forEach((r, i) => same(t, got[i], r, `seq ${r.seq}`))
  t.throws(() => j.append(rec(7, 10)), { code: 'ERR_JOURNAL_RANGE', context: { seq: 7, expected: 6 } })
  t.throws(() => j.read(0, 2), { code: 'ERR_JOURNAL_RANGE' })
  t.throws(() => j.readOne(6), { code: 'ERR_JOURNAL_RANGE' })
  t.throws(() => j.entries(4, 9), { code: 'ERR_JOURNAL_RANGE' })
  t.throws(() => j.append({ seq: 6, epoch: 1, offset: 0, length: 5, data: Buffer.alloc(4) }), { code: 'ERR_JOURNAL_RANGE' })
  t.throws(() => j.append(rec(6, 70000)), { code: 'ERR_JOURNAL_FULL' })
  const used = j.used
  await j.sync()
  j.close()
  const k = Journal.open(p, {})
  t.same(k.recovery, { records: 5, droppedTornBytes: 0, headSeq: 5, tailSeq: 1 })
  t.equal(k.used, used)
  same(t, k.readOne(5), recs[4], 'after reopen')
  k.append(rec(6, 10))
  k.syncSync()
  k.close()
  t.throws(() => k.readOne(1), { code: 'ERR_IO' })
})

t.test('journal - open errors: missing file, size mismatch, no valid superblock', async t => {
  const dir = t.testdir()
  t.throws(() => Journal.open(path.join(dir, 'none'), {}), { code: 'ERR_IO', context: { path: path.join(dir, 'none') } })
  const p = path.join(dir, 'j')
  Journal.open(p, { size: 32768, create: true }).close()
  t.throws(() => Journal.open(p, { size: 65536 }), { code: 'ERR_CONFIG', context: { expected: 65536, actual: 32768 } })
  Journal.open(p, { size: 32768, create: true }).close()
  const fd = fs.openSync(p, 'r+')
  fs.writeSync(fd, Buffer.alloc(64, 0xff), 0, 64, SUPER_SLOT_SIZE)
  fs.closeSync(fd)
  t.throws(() => Journal.open(p, {}), { code: 'ERR_JOURNAL_CORRUPT' })
})

t.test('journal - wrap-around many times the capacity: reads match and onReclaim gets exactly the evicted records in order', async t => {
  const p = path.join(t.testdir(), 'j')
  const cap = 64 * 1024
  let j = Journal.open(p, { size: cap, create: true })
  const seed = testSeed('journal wrap-around')
  const r = rng(seed)
  const model = new Map<number, JournalRecord>()
  const evictedAll: JournalEntryInfo[] = []
  const hook = (ev: JournalEntryInfo[]): void => {
    t.ok(ev.length > 0, 'reclaim evicts something')
    for (const e of ev) {
      // evicted records must still be readable while the hook runs (the owner may need them)
      same(t, j.readOne(e.seq), model.get(e.seq)!, `readable in hook ${e.seq}`)
      evictedAll.push(e)
    }
  }
  j.onReclaim = hook
  let seq = 1
  let written = 0
  let reclaims = 0
  j.onReclaim = ev => {
    reclaims++
    hook(ev)
  }
  while (written < 20 * cap) {
    const batch: JournalRecord[] = []
    const n = 1 + Math.floor(r() * 4)
    for (let i = 0; i < n; i++) {
      const len = Math.floor(r() * 6000)
      const x = rec(seq++, len, { zero: r() < 0.1, offset: Math.floor(r() * 1e9), epoch: 1 + Math.floor(seq / 100) })
      batch.push(x)
      model.set(x.seq, x)
      written += len
    }
    if (batch.length === 1) j.append(batch[0])
    else j.appendMany(batch)
    t.ok(j.used <= cap)
    if (r() < 0.05) {
      // reopen: recovery must find exactly the same held range
      const head = j.headSeq
      const tail = j.tailSeq
      j.syncSync()
      j.close()
      j = Journal.open(p, {})
      j.onReclaim = ev => {
        reclaims++
        hook(ev)
      }
      t.equal(j.headSeq, head, `head after reopen (seed ${seed})`)
      t.equal(j.tailSeq, tail, `tail after reopen (seed ${seed})`)
    }
  }
  const head = seq - 1
  t.equal(j.headSeq, head)
  t.ok(reclaims < (written / cap) * 8 + 10, `reclaim runs in chunks (${reclaims} runs)`)
  // evicted: exactly seqs 1..tail-1, in order, with the right headers
  t.equal(evictedAll.length, j.tailSeq - 1)
  let ok = true
  evictedAll.forEach((e, i) => {
    const m = model.get(i + 1)!
    if (e.seq !== i + 1 || e.offset !== m.offset || e.length !== m.length || e.zero !== (m.data === null) || e.epoch !== m.epoch) ok = false
  })
  t.ok(ok, `evicted records are 1..${j.tailSeq - 1} in order (seed ${seed})`)
  let readOk = true
  for (const got of j.read(j.tailSeq, j.headSeq)) {
    const want = model.get(got.seq)!
    if (got.offset !== want.offset || (want.data ? !got.data?.equals(want.data) : got.data !== null)) readOk = false
  }
  t.ok(readOk, `held records read back (seed ${seed})`)
  t.ok(j.headSeq - j.tailSeq > 5, 'the ring still holds a useful window')
  j.close()
})

t.test('journal - a record torn at every byte position is dropped, never trusted', async t => {
  const dir = t.testdir()
  const base = path.join(dir, 'base')
  const j = Journal.open(base, { size: 8192, create: true })
  // fill past one lap so the last record sits at ring position 0 after a wrap
  const recs: JournalRecord[] = []
  for (let s = 1; s <= 9; s++) recs.push(rec(s, 700))
  recs.slice(0, 8).forEach(x => j.append(x))
  j.close()
  const before = fs.readFileSync(base)
  const k0 = Journal.open(base, {})
  k0.append(recs[8])
  const lastPos = RING_BASE + (k0 as unknown as { index: { pos: number }[] }).index.at(-1)!.pos
  t.ok(k0.tailSeq > 1, 'the ring wrapped')
  k0.close()
  const after = fs.readFileSync(base)
  const lastLen = 64 + 700
  const trial = path.join(dir, 'trial')
  let bad = 0
  for (let b = 0; b < lastLen; b++) {
    for (const kind of ['torn', 'scribbled']) {
      let img: Buffer
      if (kind === 'torn') {
        // the write of record 9 reached the disk up to byte b; the rest is what was there before
        img = Buffer.concat([after.subarray(0, lastPos + b), before.subarray(lastPos + b)])
      } else {
        img = Buffer.from(after)
        img[lastPos + b] ^= 0x5a
      }
      fs.writeFileSync(trial, img)
      let k = Journal.open(trial, {})
      if (k.headSeq !== 8 || k.recovery.records !== 7) {
        bad++
        t.comment(`${kind} at ${b}: head ${k.headSeq}, records ${k.recovery.records}`)
        k.close()
        continue
      }
      // a new record 9 takes its place and survives a reopen
      const nine = rec(9, 300)
      k.append(nine)
      k.close()
      k = Journal.open(trial, {})
      if (k.headSeq !== 9 || !k.readOne(9).data!.equals(nine.data!) || !k.readOne(8).data!.equals(recs[7].data!)) bad++
      k.close()
    }
  }
  t.equal(bad, 0, `every torn or scribbled position recovers to seq 8 (${lastLen} positions)`)
})

t.test('journal - a file truncated inside its last record recovers to the record before', async t => {
  const dir = t.testdir()
  const base = path.join(dir, 'base')
  const j = Journal.open(base, { size: 65536, create: true })
  const recs = [rec(1, 3000), rec(2, 5000, { zero: true }), rec(3, 2000)]
  j.appendMany(recs)
  j.close()
  const image = fs.readFileSync(base)
  const lastPos = RING_BASE + 3072 + 512
  const trial = path.join(dir, 'trial')
  let bad = 0
  for (let b = 0; b < 64 + 2000; b++) {
    fs.writeFileSync(trial, image.subarray(0, lastPos + b))
    const k = Journal.open(trial, {})
    if (k.headSeq !== 2 || k.readOne(2).data !== null || !k.readOne(1).data!.equals(recs[0].data!)) bad++
    k.close()
  }
  t.equal(bad, 0, 'every truncation point recovers to seq 2')
  fs.writeFileSync(trial, image.subarray(0, lastPos + 64 + 2000))
  const k = Journal.open(trial, {})
  t.equal(k.headSeq, 3, 'the complete record (padding cut off) is kept')
  k.close()
})

t.test('journal - torn record reports droppedTornBytes', async t => {
  const p = path.join(t.testdir(), 'j')
  const j = Journal.open(p, { size: 65536, create: true })
  j.append(rec(1, 1000))
  j.append(rec(2, 1000))
  j.close()
  const fd = fs.openSync(p, 'r+')
  fs.writeSync(fd, Buffer.from([1, 2, 3]), 0, 3, RING_BASE + 1536 + 64 + 500)
  fs.closeSync(fd)
  const k = Journal.open(p, {})
  t.same(k.recovery, { records: 1, droppedTornBytes: 1536, headSeq: 1, tailSeq: 1 })
  k.close()
})

t.test('journal - truncateAfter is durable and stale records with the same seq are not resurrected', async t => {
  const p = path.join(t.testdir(), 'j')
  let j = Journal.open(p, { size: 65536, create: true })
  const old: JournalRecord[] = []
  for (let s = 1; s <= 10; s++) old.push(rec(s, 1000))
  j.appendMany(old)
  j.truncateAfter(12)
  t.equal(j.headSeq, 10)
  j.truncateAfter(5)
  t.equal(j.headSeq, 5)
  t.throws(() => j.readOne(6), { code: 'ERR_JOURNAL_RANGE' })
  j.close()
  j = Journal.open(p, {})
  t.equal(j.headSeq, 5, 'truncation survived reopen')
  // same sizes as before: old 7..10 sit exactly where the new 7 would look
  const six = rec(6, 1000, { epoch: 2 })
  j.append(six)
  j.close()
  j = Journal.open(p, {})
  t.equal(j.headSeq, 6, 'old 7..10 do not follow the new 6')
  same(t, j.readOne(6), six, 'new 6')
  j.truncateAfter(0)
  t.equal(j.headSeq, 0)
  t.equal(j.tailSeq, 1)
  j.close()
  j = Journal.open(p, {})
  t.equal(j.headSeq, 0, 'truncating everything survived reopen')
  t.throws(() => j.truncateAfter(-1), { code: 'ERR_JOURNAL_RANGE' })
  j.close()
})

t.test('journal - reset empties the journal so the next append is nextSeq', async t => {
  const p = path.join(t.testdir(), 'j')
  let j = Journal.open(p, { size: 65536, create: true })
  for (let s = 1; s <= 5; s++) j.append(rec(s, 100))
  j.reset(100)
  t.equal(j.headSeq, 99)
  t.equal(j.tailSeq, 100)
  t.equal(j.used, 0)
  t.throws(() => j.append(rec(6, 10)), { code: 'ERR_JOURNAL_RANGE' })
  j.close()
  j = Journal.open(p, {})
  t.equal(j.headSeq, 99, 'reset survived reopen, old records not found')
  const r = rec(100, 100)
  j.append(r)
  j.close()
  j = Journal.open(p, {})
  t.equal(j.headSeq, 100)
  same(t, j.readOne(100), r, 'first record after reset')
  t.throws(() => j.reset(0), { code: 'ERR_JOURNAL_RANGE' })
  j.close()
})

t.test('journal - onReclaim that throws leaves the journal unchanged', async t => {
  const p = path.join(t.testdir(), 'j')
  const j = Journal.open(p, { size: 8192, create: true })
  let s = 1
  while (j.used + 1024 <= j.capacity) j.append(rec(s++, 900))
  const head = j.headSeq
  j.onReclaim = () => {
    throw new Error('bitmap persist failed')
  }
  t.throws(() => j.append(rec(s, 900)), { message: 'bitmap persist failed' })
  t.equal(j.headSeq, head)
  t.equal(j.tailSeq, 1)
  j.close()
})

t.test('journal - replay brings the volume up to date', async t => {
  const dir = t.testdir()
  const size = 1 << 20
  const v = Volume.open(path.join(dir, 'data'), { blockSize: 4096, size, create: true })
  const j = Journal.open(path.join(dir, 'j'), { size: 4 << 20, create: true })
  const model = Buffer.alloc(size)
  const r = rng(7)
  for (let s = 1; s <= 300; s++) {
    const off = Math.floor(r() * (size - 9000))
    const len = Math.floor(r() * 9000)
    const zero = r() < 0.1
    const x = rec(s, len, { zero, offset: off })
    j.append(x)
    if (zero) model.fill(0, off, off + len)
    else x.data!.copy(model, off)
    // the crash: only some writes reached the data file
    if (r() < 0.3) {
      if (zero) v.zero(off, len)
      else v.write(off, x.data!)
    }
  }
  t.notOk(v.read(0, size).equals(model), 'data file is behind before replay')
  t.equal(replayJournal(j, v), 300)
  t.ok(v.read(0, size).equals(model), 'data file matches after replay')
  t.equal(replayJournal(j, v, 301), 0)
  t.equal(replayJournal(j, v, 250), 51)
  t.ok(v.read(0, size).equals(model), 'replay is idempotent')
  v.close()
  j.close()
})

t.test('journal - a checkpoint write torn by a crash falls back to the previous checkpoint with every record', async t => {
  const p = path.join(t.testdir(), 'j')
  const j = Journal.open(p, { size: 8192, create: true })
  const recs: JournalRecord[] = []
  for (let s = 1; s <= 8; s++) recs.push(rec(s, 900))
  recs.forEach(x => j.append(x))
  t.equal(j.tailSeq, 1, 'ring full, nothing reclaimed yet')
  j.syncSync()
  const before = fs.readFileSync(p)
  let reclaimed = 0
  j.onReclaim = ev => {
    reclaimed += ev.length
  }
  j.append(rec(9, 900))
  t.ok(reclaimed > 0, 'the append reclaimed')
  j.close()
  const after = fs.readFileSync(p)
  // the crash hit while the new checkpoint sector was being written: it is garbage, nothing after it reached the disk
  const slot = [0, 1].find(i => !after.subarray(i * SUPER_SLOT_SIZE, i * SUPER_SLOT_SIZE + 64).equals(before.subarray(i * SUPER_SLOT_SIZE, i * SUPER_SLOT_SIZE + 64)))!
  const img = Buffer.from(before)
  after.copy(img, slot * SUPER_SLOT_SIZE, slot * SUPER_SLOT_SIZE, slot * SUPER_SLOT_SIZE + 30)
  fs.writeFileSync(p, img)
  const k = Journal.open(p, {})
  t.equal(k.tailSeq, 1)
  t.equal(k.headSeq, 8)
  recs.forEach(x => same(t, k.readOne(x.seq), x, `seq ${x.seq}`))
  k.close()
})
