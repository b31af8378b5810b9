import t from 'tap'
import fc from 'fast-check'
import { nativeBitmaps, nativeFreeBitmaps } from '../src/storage/bitmaps.js'
import { runs } from '../src/replication/resync-sender.js'
import { BlockrepError } from '../src/util/errors.js'
import type { BitmapFactory, BlockBitmap } from '../src/storage/types.js'
import { property } from './helpers/property.js'

/**
 * Model-based: every operation on a bitmap is mirrored on a Set<number>, and
 * after each one the bitmap must agree with the Set (size, has, iteration
 * order, runs, a serialize round trip read by both backends).
 */
const factories: BitmapFactory[] = [nativeBitmaps, nativeFreeBitmaps]

// values near container edges (multiples of 65536) and the top of u32, where the formats change
const BASES = [0, 65536, 2 * 65536, 7 * 65536, 0xffffffff - 20000]
const value = fc.tuple(fc.constantFrom(...BASES), fc.integer({ min: -3000, max: 12000 })).map(([b, d]) => Math.min(0xffffffff, Math.max(0, b + d)))
const range = fc.tuple(value, fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 9000 }))).map(([s, n]) => [s, Math.min(0x100000000, s + n)] as const)

type Op =
  | { op: 'add' | 'remove' | 'has'; v: number }
  | { op: 'addRange' | 'removeRange'; start: number; end: number }
  | { op: 'clear' | 'roundtrip' | 'clone' }
  | { op: 'or'; vs: number[] }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: value.map((v) => ({ op: 'add' as const, v })) },
  { weight: 3, arbitrary: value.map((v) => ({ op: 'remove' as const, v })) },
  { weight: 2, arbitrary: value.map((v) => ({ op: 'has' as const, v })) },
  { weight: 3, arbitrary: range.map(([start, end]) => ({ op: 'addRange' as const, start, end })) },
  { weight: 2, arbitrary: range.map(([start, end]) => ({ op: 'removeRange' as const, start, end })) },
  { weight: 1, arbitrary: fc.array(value, { maxLength: 30 }).map((vs) => ({ op: 'or' as const, vs })) },
  { weight: 1, arbitrary: fc.constantFrom({ op: 'clear' as const }, { op: 'roundtrip' as const }, { op: 'clone' as const }) },
)

function apply(f: BitmapFactory, b: BlockBitmap, m: Set<number>, o: Op): BlockBitmap {
  switch (o.op) {
    case 'add':
      b.add(o.v)
      m.add(o.v)
      return b
    case 'remove':
      b.remove(o.v)
      m.delete(o.v)
      return b
    case 'has':
      if (b.has(o.v) !== m.has(o.v)) throw new Error(`has(${o.v}) = ${b.has(o.v)}`)
      return b
    case 'addRange':
      b.addRange(o.start, o.end)
      for (let v = o.start; v < o.end; v++) m.add(v)
      return b
    case 'removeRange':
      b.removeRange(o.start, o.end)
      for (let v = o.start; v < o.end; v++) m.delete(v)
      return b
    case 'or':
      b.orInPlace(f.create(o.vs))
      for (const v of o.vs) m.add(v)
      return b
    case 'clear':
      b.clear()
      m.clear()
      return b
    case 'roundtrip':
      return f.deserialize(b.serialize())
    case 'clone': {
      const c = b.clone()
      // the clone is independent of its source
      b.add(0)
      return c
    }
  }
}

/** Runs of contiguous values in a sorted array, as resync-sender cuts them. */
function modelRuns(sorted: number[], max: number): [number, number][] {
  const out: [number, number][] = []
  for (const v of sorted) {
    const last = out[out.length - 1]
    if (last && v === last[0] + last[1] && last[1] < max) last[1]++
    else out.push([v, 1])
  }
  return out
}

function agree(b: BlockBitmap, m: Set<number>, where: string): void {
  const want = [...m].sort((x, y) => x - y)
  if (b.size !== want.length) throw new Error(`${where}: size ${b.size}, model ${want.length}`)
  if (b.isEmpty() !== (want.length === 0)) throw new Error(`${where}: isEmpty ${b.isEmpty()}`)
  const got = [...b]
  if (got.length !== want.length || got.some((v, i) => v !== want[i])) throw new Error(`${where}: iteration ${JSON.stringify(got.slice(0, 20))}… != ${JSON.stringify(want.slice(0, 20))}…`)
  const arr = b.toArray()
  if (arr.length !== want.length || arr.some((v, i) => v !== want[i])) throw new Error(`${where}: toArray differs`)
  const r = [...runs(b, 4096)]
  const mr = modelRuns(want, 4096)
  if (JSON.stringify(r) !== JSON.stringify(mr)) throw new Error(`${where}: runs differ`)
}

for (const f of factories) {
  t.test(`bitmap (${f.kind}) - random operations agree with a Set model`, async (t) => {
    property(t, `bitmap ${f.kind} vs Set`, fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
      let b = f.create()
      const m = new Set<number>()
      ops.forEach((o, i) => {
        b = apply(f, b, m, o)
        agree(b, m, `after op ${i} ${o.op}`)
      })
      // the final set read back by both backends, and the formats they write are the same set
      const bytes = b.serialize()
      for (const g of factories) agree(g.deserialize(bytes), m, `${f.kind} file read by ${g.kind}`)
    }), 150)
  })
}

t.test('bitmap - both backends serialize every set so that the other reads the same set', async (t) => {
  property(t, 'bitmap cross-backend', fc.property(fc.array(fc.oneof(value.map((v) => [v, v + 1] as const), range), { maxLength: 12 }), (ranges) => {
    const m = new Set<number>()
    const a = nativeBitmaps.create()
    const b = nativeFreeBitmaps.create()
    for (const [s, e] of ranges) {
      a.addRange(s, e)
      b.addRange(s, e)
      for (let v = s; v < e; v++) m.add(v)
    }
    agree(nativeFreeBitmaps.deserialize(a.serialize()), m, 'native file read by native-free')
    agree(nativeBitmaps.deserialize(b.serialize()), m, 'native-free file read by native')
  }), 150)
})

t.test('bitmap - deserialize of mutated bytes is a typed error or some valid set, never a crash', async (t) => {
  property(t, 'bitmap mutated file', fc.property(fc.array(range, { maxLength: 6 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(64), (ranges, flips, cut) => {
    const src = nativeFreeBitmaps.create()
    for (const [s, e] of ranges) src.addRange(s, e)
    const bytes = Buffer.from(src.serialize())
    for (const [at, x] of flips) bytes[at % bytes.length] ^= x
    const input = cut > 0 && cut < bytes.length ? bytes.subarray(0, bytes.length - cut) : bytes
    for (const f of factories) {
      let got: BlockBitmap
      try {
        got = f.deserialize(input)
      } catch (err) {
        if (!(err instanceof BlockrepError) || err.code !== 'ERR_BITMAP_FORMAT') throw new Error(`${f.kind}: untyped error ${String(err)}`)
        continue
      }
      // accepted: it must behave as a set (sorted, unique, size consistent)
      const arr = got.toArray()
      if (arr.length !== got.size) throw new Error(`${f.kind}: size ${got.size} but ${arr.length} values`)
      for (let i = 1; i < arr.length; i++) if (!(arr[i] > arr[i - 1])) throw new Error(`${f.kind}: values not ascending at ${i}`)
    }
  }), 300)
})
