import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { MetadataStore, emptyPeerMeta, type MetaLoad } from '../src/storage/metadata.js'
import { bitmaps, nativeBitmaps, nativeFreeBitmaps } from '../src/storage/bitmaps.js'
import { SLOT_HEADER } from '../src/storage/metadata-format.js'
import type { NodeMeta } from '../src/storage/types.js'

function sampleMeta(head = 42): NodeMeta {
  const b = bitmaps()
  const peer = emptyPeerMeta('node-b')
  peer.ackedSeq = head - 2
  peer.dirty.addRange(100, 200)
  peer.dirty.add(70000)
  peer.bitmapValid = true
  return {
    volumeId: '6f1c2a9e-0000-4000-8000-000000000001',
    nodeId: 'node-a',
    blockSize: 4096,
    size: 1 << 30,
    role: 'primary',
    epochs: [
      { epoch: 1, nodeId: 'node-a', startSeq: 1 },
      { epoch: 2, nodeId: 'node-c', startSeq: 2 ** 40 },
    ],
    headSeq: head,
    journalTail: 7,
    consistent: true,
    syncedOnce: true,
    resyncRemaining: b.create([1, 2, 3, 9999]),
    cleanShutdown: false,
    peers: { 'node-b': peer },
  }
}

/** Comparable view: bitmaps as arrays. */
function plain(m: NodeMeta): unknown {
  return {
    ...m,
    resyncRemaining: m.resyncRemaining?.toArray() ?? null,
    peers: Object.fromEntries(Object.entries(m.peers).map(([k, p]) => [k, { ...p, dirty: p.dirty.toArray() }])),
  }
}

function loaded(t: Test, load: MetaLoad): Extract<MetaLoad, { ok: true }> {
  if (!load.ok) {
    t.fail(`load failed: ${load.reason}`)
    throw new Error(load.reason)
  }
  return load
}

t.test('metadata - create, open and save round trip every field', async t => {
  const p = path.join(t.testdir(), 'meta')
  const m = sampleMeta()
  MetadataStore.create(p, m).close()
  let { store, load } = MetadataStore.open(p)
  let l = loaded(t, load)
  t.same(plain(l.meta), plain(m))
  t.equal(l.generation, 1)
  t.equal(l.fellBack, false)
  const m2 = { ...sampleMeta(43), role: 'standby' as const, resyncRemaining: null, cleanShutdown: true }
  store.save(m2)
  store.save({ ...m2, headSeq: 44 })
  store.close()
  store.close()
  ;({ store, load } = MetadataStore.open(p))
  l = loaded(t, load)
  t.same(plain(l.meta), plain({ ...m2, headSeq: 44 }))
  t.equal(l.generation, 3)
  t.equal(l.fellBack, false)
  store.close()
  t.throws(() => store.save(m2), { code: 'ERR_IO' })
})

t.test('metadata - a missing file throws ERR_IO naming the path', async t => {
  const p = path.join(t.testdir(), 'none')
  t.throws(() => MetadataStore.open(p), { code: 'ERR_IO', context: { path: p } })
})

t.test('metadata - a corrupt newest slot falls back to the previous generation', async t => {
  const p = path.join(t.testdir(), 'meta')
  const store = MetadataStore.create(p, sampleMeta(10))
  store.save(sampleMeta(11))
  store.save(sampleMeta(12))
  store.close()
  const size = fs.statSync(p).size
  const half = size / 2
  // generation 3 sits in slot 1; flip a byte in its body
  const img = fs.readFileSync(p)
  img[half + SLOT_HEADER + 5] ^= 1
  fs.writeFileSync(p, img)
  const { store: s2, load } = MetadataStore.open(p)
  const l = loaded(t, load)
  t.equal(l.generation, 2)
  t.equal(l.meta.headSeq, 11)
  t.equal(l.fellBack, true)
  // the next save goes into the corrupt slot, never over the good one
  s2.save(sampleMeta(13))
  s2.close()
  const again = MetadataStore.open(p)
  const l2 = loaded(t, again.load)
  t.equal(l2.generation, 3)
  t.equal(l2.meta.headSeq, 13)
  t.equal(l2.fellBack, false)
  again.store.close()
})

t.test('metadata - both slots corrupt: ok false with a reason, and a fresh save recovers', async t => {
  const p = path.join(t.testdir(), 'meta')
  const store = MetadataStore.create(p, sampleMeta(10))
  store.save(sampleMeta(11))
  store.close()
  const img = fs.readFileSync(p)
  const half = img.length / 2
  img[SLOT_HEADER + 1] ^= 0xff
  img[half + 3] ^= 0xff
  fs.writeFileSync(p, img)
  const { store: s2, load } = MetadataStore.open(p)
  t.equal(load.ok, false)
  if (!load.ok) t.match(load.reason, /slot 0: body checksum mismatch; slot 1: bad magic/)
  s2.save(sampleMeta(20))
  s2.close()
  const again = MetadataStore.open(p)
  t.equal(loaded(t, again.load).meta.headSeq, 20)
  again.store.close()
  fs.writeFileSync(p, Buffer.alloc(33))
  const odd = MetadataStore.open(p)
  t.same(odd.load, { ok: false, reason: 'file size 33 is not two metadata slots' })
  odd.store.save(sampleMeta(21))
  odd.store.close()
  t.equal(loaded(t, MetadataStore.open(p).load).meta.headSeq, 21)
})

t.test('metadata - a save torn at any byte leaves the old or the new version, never garbage', async t => {
  const dir = t.testdir()
  const p = path.join(dir, 'meta')
  const store = MetadataStore.create(p, sampleMeta(10))
  store.save(sampleMeta(11))
  store.close()
  const before = fs.readFileSync(p)
  const s = MetadataStore.open(p).store
  s.save(sampleMeta(12))
  s.close()
  const after = fs.readFileSync(p)
  const changed: number[] = []
  for (let i = 0; i < after.length; i++) if (after[i] !== before[i]) changed.push(i)
  const first = changed[0]
  const last = changed[changed.length - 1]
  const trial = path.join(dir, 'trial')
  let bad = 0
  for (let b = first; b <= last + 1; b++) {
    fs.writeFileSync(trial, Buffer.concat([after.subarray(0, b), before.subarray(b)]))
    const { store: st, load } = MetadataStore.open(trial)
    st.close()
    const head = load.ok ? load.meta.headSeq : -1
    if (head !== 11 && head !== 12) bad++
    if (b <= last && head === 12) bad++
  }
  t.equal(bad, 0, `all ${last + 2 - first} tear points load generation 2 (or 3 once complete)`)
})

t.test('metadata - a body that outgrows its slot relocates the file and keeps the fallback', async t => {
  const p = path.join(t.testdir(), 'meta')
  const store = MetadataStore.create(p, sampleMeta(1))
  const small = fs.statSync(p).size
  const big = sampleMeta(2)
  // scattered blocks make a large Roaring body
  for (let i = 0; i < 40000; i++) big.peers['node-b'].dirty.add(i * 7)
  store.save(big)
  const grown = fs.statSync(p).size
  t.ok(grown > small, `file grew from ${small} to ${grown}`)
  store.save(sampleMeta(3))
  store.close()
  let { store: s2, load } = MetadataStore.open(p)
  t.equal(loaded(t, load).meta.headSeq, 3)
  s2.close()
  // corrupt generation 3: the relocated big version 2 is the fallback
  const img = fs.readFileSync(p)
  img[(img.length / 2) * 1 + 40] ^= 1
  fs.writeFileSync(p, img)
  ;({ store: s2, load } = MetadataStore.open(p))
  const l = loaded(t, load)
  t.equal(l.meta.headSeq, 2)
  t.equal(l.fellBack, true)
  t.equal(l.meta.peers['node-b'].dirty.size, big.peers['node-b'].dirty.size)
  s2.close()
  t.same(fs.readdirSync(path.dirname(p)), ['meta'], 'no temp file left behind')
})

t.test('metadata - native and native-free bitmaps read each other', async t => {
  const p = path.join(t.testdir(), 'meta')
  const m = sampleMeta()
  MetadataStore.create(p, m).close()
  for (const f of [nativeBitmaps, nativeFreeBitmaps]) {
    const { store, load } = MetadataStore.open(p, f)
    t.same(plain(loaded(t, load).meta), plain(m), f.kind)
    store.close()
  }
})

t.test('metadata - emptyPeerMeta starts with nothing acked and an invalid bitmap', async t => {
  const p = emptyPeerMeta('x')
  t.equal(p.nodeId, 'x')
  t.equal(p.ackedSeq, 0)
  t.ok(p.dirty.isEmpty())
  t.equal(p.bitmapValid, false)
})
