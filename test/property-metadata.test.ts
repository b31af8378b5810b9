import t from 'tap'
import fc from 'fast-check'
import fs from 'node:fs'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { MetadataStore } from '../src/storage/metadata.js'
import { SLOT_HEADER, encodeBody } from '../src/storage/metadata-format.js'
import { bitmaps } from '../src/storage/bitmaps.js'
import type { NodeMeta } from '../src/storage/types.js'
import { property } from './helpers/property.js'

/**
 * The metadata file against a model: a list of the versions saved, and for
 * each of the two slots which generation it should hold and whether its bytes
 * are still what was written. Saves (small ones in place, large ones that
 * relocate the file), crashes that tear a save at any byte, bit rot in either
 * slot, and reopens: every open must return the newest generation whose slot
 * is intact, report a fall-back when the other slot holds damage, and report
 * failure (never a wrong version) when neither slot is intact.
 */
const factory = bitmaps()

const blocks = fc.oneof(fc.uniqueArray(fc.nat(5000), { maxLength: 30 }), fc.constant(null).map(() => Array.from({ length: 3000 }, (_, i) => i * 37)))
const meta: fc.Arbitrary<NodeMeta> = fc
  .record({
    epochs: fc.array(fc.record({ epoch: fc.nat(100), nodeId: fc.constantFrom('a', 'b', 'node-c'), startSeq: fc.nat(10 ** 9) }), { maxLength: 5 }),
    headSeq: fc.nat(2 ** 40),
    journalTail: fc.nat(2 ** 40),
    role: fc.constantFrom<'primary' | 'standby'>('primary', 'standby'),
    consistent: fc.boolean(),
    syncedOnce: fc.boolean(),
    cleanShutdown: fc.boolean(),
    remaining: fc.option(fc.uniqueArray(fc.nat(5000), { maxLength: 20 }), { nil: null }),
    peers: fc.array(fc.record({ nodeId: fc.constantFrom('b', 'c', 'd'), ackedSeq: fc.nat(2 ** 40), dirty: blocks, bitmapValid: fc.boolean() }), { maxLength: 3 }),
  })
  .map((r) => ({
    volumeId: 'c0ffee00-0000-4000-8000-000000000001',
    nodeId: 'a',
    blockSize: 4096,
    size: 1 << 30,
    role: r.role,
    epochs: r.epochs,
    headSeq: r.headSeq,
    journalTail: r.journalTail,
    consistent: r.consistent,
    syncedOnce: r.syncedOnce,
    resyncRemaining: r.remaining ? factory.create(r.remaining) : null,
    cleanShutdown: r.cleanShutdown,
    peers: Object.fromEntries(r.peers.map((p) => [p.nodeId, { ...p, dirty: factory.create(p.dirty) }])),
  }))

type Op =
  | { op: 'save'; meta: NodeMeta }
  | { op: 'crashDuringSave'; meta: NodeMeta; cut: number }
  | { op: 'rot'; slot: number; at: number; xor: number }
  | { op: 'reopen' }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: meta.map((m) => ({ op: 'save' as const, meta: m })) },
  { weight: 2, arbitrary: fc.tuple(meta, fc.nat()).map(([m, cut]) => ({ op: 'crashDuringSave' as const, meta: m, cut })) },
  { weight: 1, arbitrary: fc.record({ slot: fc.nat(1), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }).map((r) => ({ op: 'rot' as const, ...r })) },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
)

/** A NodeMeta as plain data (bitmaps as arrays) for comparison. */
function plain(m: NodeMeta): unknown {
  return JSON.parse(JSON.stringify({ ...m, resyncRemaining: m.resyncRemaining?.toArray() ?? null, peers: Object.fromEntries(Object.entries(m.peers).map(([k, p]) => [k, { ...p, dirty: p.dirty.toArray() }])) }))
}

let n = 0

t.test('metadata - saves, torn saves, bit rot and reopens agree with a two-slot model', async (t) => {
  const dir = t.testdir()
  property(t, 'metadata vs model', fc.property(meta, fc.array(op, { maxLength: 14 }), (first, ops) => {
    const file = path.join(dir, `m${n++}`)
    const versions = new Map<number, NodeMeta>([[1, first]])
    // per slot: the generation it should hold (0: none), whether its meaningful bytes are intact, and
    // whether its header is all zeros (never written: not damage)
    const slots = [{ gen: 0, intact: true, blank: true }, { gen: 1, intact: true, blank: false }]
    let store = MetadataStore.create(file, first)
    let gen = 1
    const slotSize = (): number => fs.statSync(file).size / 2
    const bodyEnd = (g: number): number => SLOT_HEADER + encodeBody(versions.get(g)!).length
    const expectOpen = (): void => {
      store.close()
      const { store: s, load } = MetadataStore.open(file, factory)
      store = s
      const good = slots.filter((x) => x.gen > 0 && x.intact).sort((a, b) => b.gen - a.gen)
      if (good.length === 0) {
        if (load.ok) throw new Error(`both slots damaged, yet open returned generation ${load.generation}`)
        gen = 0
        return
      }
      const want = good[0]!.gen
      if (!load.ok) throw new Error(`open failed (${load.reason}) though generation ${want} is intact`)
      if (load.generation !== want) throw new Error(`open returned generation ${load.generation}, want ${want}`)
      if (!isDeepStrictEqual(plain(load.meta), plain(versions.get(want)!))) throw new Error(`generation ${want} read back different`)
      const other = slots.find((x) => x !== good[0])!
      const damaged = !other.blank && !(other.gen > 0 && other.intact)
      if (load.fellBack !== damaged) throw new Error(`fellBack ${load.fellBack}, want ${damaged}`)
      gen = want
    }
    for (const o of ops) {
      if (o.op === 'save' || o.op === 'crashDuringSave') {
        if (gen === 0) {
          // nothing verified on disk: a save starts over at generation 1 in slot 1
          slots[0] = { gen: 0, intact: true, blank: true }
        }
        const g = gen + 1
        const before = fs.readFileSync(file)
        const prev = { ...slots[g % 2]! }
        versions.set(g, o.meta)
        store.save(o.meta)
        const relocated = fs.statSync(file).size !== before.length
        const s = g % 2
        if (relocated) {
          // a new file beside the old, renamed over it: it holds g and (when there was one) g - 1
          slots[s] = { gen: g, intact: true, blank: false }
          slots[1 - s] = gen > 0 ? { gen: gen, intact: true, blank: false } : { gen: 0, intact: true, blank: true }
        } else {
          slots[s] = { gen: g, intact: true, blank: false }
        }
        gen = g
        if (o.op === 'crashDuringSave' && !relocated) {
          // the crash kept only the first `cut` bytes of the slot write: the rest is what was there before
          const size = slotSize()
          const end = bodyEnd(g)
          const cut = o.cut % end
          const meant = fs.readFileSync(file).subarray(s * size, s * size + end)
          const fd = fs.openSync(file, 'r+')
          fs.writeSync(fd, before, s * size + cut, end - cut, s * size + cut)
          fs.closeSync(fd)
          const now = fs.readFileSync(file).subarray(s * size, s * size + end)
          const blank = now.subarray(0, SLOT_HEADER).every((b) => b === 0)
          const prevEnd = prev.gen > 0 ? bodyEnd(prev.gen) : 0
          const prevKept = prev.gen > 0 && fs.readFileSync(file).subarray(s * size, s * size + prevEnd).equals(before.subarray(s * size, s * size + prevEnd))
          if (now.equals(meant)) slots[s] = { gen: g, intact: true, blank: false }
          else if (prevKept) slots[s] = prev // torn before anything that matters changed: the old version stands
          else slots[s] = { gen: blank ? 0 : g, intact: false, blank }
          expectOpen()
        }
      } else if (o.op === 'rot') {
        const size = slotSize()
        const x = slots[o.slot]!
        const at = o.at % size
        const fd = fs.openSync(file, 'r+')
        const b = Buffer.alloc(1)
        fs.readSync(fd, b, 0, 1, o.slot * size + at)
        b[0] ^= o.xor
        fs.writeSync(fd, b, 0, 1, o.slot * size + at)
        fs.closeSync(fd)
        // damage past a slot's body changes nothing it holds
        if (x.gen > 0 && at < bodyEnd(x.gen)) x.intact = false
        if (at < SLOT_HEADER) x.blank = false
        expectOpen()
      } else {
        expectOpen()
      }
    }
    store.close()
    fs.rmSync(file, { force: true })
  }), 120)
})
