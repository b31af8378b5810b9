import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { randomBytesFrom, testSeed } from './helpers/seed.js'
import { Volume } from '../src/storage/volume.js'

/** Deterministic PRNG so a failing run can be replayed from its seed. */
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

t.test('volume - create makes a zero-filled file of the given size', async t => {
  const p = path.join(t.testdir(), 'vol')
  const v = Volume.open(p, { blockSize: 4096, size: 1 << 20, create: true })
  t.equal(v.size, 1 << 20)
  t.equal(v.blocks, 256)
  t.equal(fs.statSync(p).size, 1 << 20)
  t.ok(v.read(0, 1 << 20).equals(Buffer.alloc(1 << 20)))
  v.close()
  const again = Volume.open(p, { blockSize: 4096 })
  t.equal(again.size, 1 << 20)
  again.close()
})

t.test('volume - wrong size is refused naming expected and actual', async t => {
  const dir = t.testdir()
  const p = path.join(dir, 'vol')
  fs.writeFileSync(p, Buffer.alloc(8192))
  t.throws(() => Volume.open(p, { blockSize: 4096, size: 16384 }), { code: 'ERR_VOLUME_SIZE', context: { expected: 16384, actual: 8192 } })
  fs.writeFileSync(p, Buffer.alloc(5000))
  t.throws(() => Volume.open(p, { blockSize: 4096 }), { code: 'ERR_VOLUME_SIZE', context: { actual: 5000 } })
  t.throws(() => Volume.open(p, { blockSize: 4096, size: 6000, create: true }), { code: 'ERR_VOLUME_SIZE' })
  t.throws(() => Volume.open(p, { blockSize: 1000 }), { code: 'ERR_VOLUME_SIZE' })
  t.throws(() => Volume.open(path.join(dir, 'missing'), { blockSize: 4096 }), { code: 'ERR_IO', context: { path: path.join(dir, 'missing') } })
})

t.test('volume - create extends a shorter file and keeps its content', async t => {
  const p = path.join(t.testdir(), 'vol')
  fs.writeFileSync(p, Buffer.alloc(4096, 7))
  const v = Volume.open(p, { blockSize: 4096, size: 16384, create: true })
  t.ok(v.readBlocks(0, 1).equals(Buffer.alloc(4096, 7)))
  t.ok(v.readBlocks(1, 3).equals(Buffer.alloc(3 * 4096)))
  v.close()
})

t.test('volume - out of range reads and writes throw ERR_OUT_OF_RANGE with the range', async t => {
  const v = Volume.open(path.join(t.testdir(), 'vol'), { blockSize: 512, size: 4096, create: true })
  t.throws(() => v.read(4000, 100), { code: 'ERR_OUT_OF_RANGE', context: { offset: 4000, length: 100, size: 4096 } })
  t.throws(() => v.write(-1, Buffer.alloc(1)), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => v.zero(4096, 1), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => v.writeBlocks(0, Buffer.alloc(100)), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => v.readBlocks(8, 1), { code: 'ERR_OUT_OF_RANGE' })
  v.write(4095, Buffer.from([1]))
  t.equal(v.read(4095, 1)[0], 1)
  t.equal(v.read(4096, 0).length, 0)
  v.close()
  t.throws(() => v.read(0, 1), { code: 'ERR_IO' })
  v.close()
})

t.test('volume - random unaligned writes, zeroes and reads match an in-memory model', async t => {
  const size = 256 * 1024
  const v = Volume.open(path.join(t.testdir(), 'vol'), { blockSize: 4096, size, create: true })
  const model = Buffer.alloc(size)
  const seed = testSeed('volume random ops')
  const r = rng(seed)
  for (let i = 0; i < 2000; i++) {
    const off = Math.floor(r() * size)
    const len = Math.floor(r() * Math.min(size - off, 20000))
    const op = r()
    if (op < 0.5) {
      const data = randomBytesFrom(r, len)
      v.write(off, data)
      data.copy(model, off)
    } else if (op < 0.6) {
      v.zero(off, len)
      model.fill(0, off, off + len)
    } else if (op < 0.7) {
      const first = Math.floor(r() * (size / 4096))
      const count = Math.floor(r() * (size / 4096 - first))
      const data = randomBytesFrom(r, count * 4096)
      v.writeBlocks(first, data)
      data.copy(model, first * 4096)
    } else {
      const got = v.read(off, len)
      if (!got.equals(model.subarray(off, off + len))) {
        t.fail(`mismatch at op ${i} [${off}, +${len}) seed ${seed}`)
        break
      }
    }
  }
  const into = Buffer.alloc(size)
  v.readInto(into, 0)
  t.ok(into.equals(model), `whole volume matches (seed ${seed})`)
  await v.flush()
  v.flushSync()
  v.close()
})

t.test('volume - zero of a range larger than the zero chunk', async t => {
  const size = 3 * 1024 * 1024
  const v = Volume.open(path.join(t.testdir(), 'vol'), { blockSize: 4096, size, create: true })
  v.write(0, Buffer.alloc(size, 0xab))
  v.zero(100, size - 200)
  const got = v.read(0, size)
  t.equal(got[99], 0xab)
  t.equal(got[100], 0)
  t.equal(got[size - 101], 0)
  t.equal(got[size - 100], 0xab)
  t.ok(got.subarray(100, size - 100).equals(Buffer.alloc(size - 200)))
  v.close()
})

t.test('volume - flush of a closed volume rejects with ERR_IO', async t => {
  const v = Volume.open(path.join(t.testdir(), 'vol'), { blockSize: 4096, size: 4096, create: true })
  v.close()
  await t.rejects(v.flush(), { code: 'ERR_IO' })
})
