import t from 'tap'
import fc from 'fast-check'
import fs from 'node:fs'
import path from 'node:path'
import { Journal } from '../src/storage/journal.js'
import { MetadataStore } from '../src/storage/metadata.js'
import { bitmaps } from '../src/storage/bitmaps.js'
import { BlockrepError } from '../src/util/errors.js'
import type { JournalRecord, NodeMeta } from '../src/storage/types.js'
import { property } from './helpers/property.js'

/**
 * Mutated files fed to the storage readers: every open ends in a typed
 * BlockrepError or in content that was really written (never invented or
 * altered data). The journal is being reworked elsewhere; this only uses its
 * public open/append/read API and checks no more than that contract.
 */
const flips = fc.array(fc.record({ at: fc.nat(), x: fc.integer({ min: 1, max: 255 }), len: fc.integer({ min: 1, max: 16 }) }), { minLength: 1, maxLength: 4 })

function mutateFile(file: string, fs_: { at: number; x: number; len: number }[], truncate: number | null): void {
  const b = fs.readFileSync(file)
  for (const f of fs_) for (let i = 0; i < f.len; i++) b[(f.at + i) % b.length] ^= f.x
  fs.writeFileSync(file, truncate === null ? b : b.subarray(0, truncate % (b.length + 1)))
}

function typed(err: unknown, where: string): void {
  if (!(err instanceof BlockrepError) || !/^ERR_[A-Z_]+$/.test(err.code)) throw new Error(`${where}: untyped error ${String(err)}`)
}

let n = 0

t.test('journal reader fuzz - a mutated journal file opens to records that were written, or a typed error', async (t) => {
  const dir = t.testdir()
  const outcome = { errors: 0, opened: 0 }
  property(t, 'journal mutated file', fc.property(fc.array(fc.integer({ min: 0, max: 9000 }), { minLength: 1, maxLength: 12 }), flips, fc.option(fc.nat(), { nil: null }), (sizes, fl, truncate) => {
    const file = path.join(dir, `j${n++}`)
    const written = new Map<number, JournalRecord>()
    const j = Journal.open(file, { size: 64 * 1024, create: true })
    j.onReclaim = () => {}
    sizes.forEach((len, i) => {
      const rec: JournalRecord = { seq: i + 1, epoch: 1, offset: i * 4096, length: len, data: len % 5 === 0 ? null : Buffer.alloc(len, (i * 37 + 1) & 0xff) }
      j.append(rec)
      written.set(rec.seq, rec)
    })
    j.syncSync()
    j.close()
    mutateFile(file, fl, truncate)
    let r: Journal
    try {
      r = Journal.open(file, {})
    } catch (err) {
      typed(err, 'open')
      outcome.errors++
      return
    }
    outcome.opened++
    try {
      if (r.headSeq > sizes.length) throw new Error(`head ${r.headSeq} past the ${sizes.length} records written`)
      if (r.headSeq >= r.tailSeq) {
        for (const rec of r.read(r.tailSeq, r.headSeq)) {
          const w = written.get(rec.seq)
          if (!w) throw new Error(`record ${rec.seq} was never written`)
          const same = rec.offset === w.offset && rec.length === w.length && (rec.data === null ? w.data === null : w.data !== null && rec.data.equals(w.data))
          if (!same) throw new Error(`record ${rec.seq} reads back different from what was written`)
        }
      }
    } catch (err) {
      if (err instanceof Error && !(err instanceof BlockrepError)) throw err
      typed(err, 'read')
    } finally {
      r.close()
      fs.rmSync(file, { force: true })
    }
  }), 300)
  t.comment(`journal fuzz outcomes: ${JSON.stringify(outcome)}`)
})

const meta = (head: number): NodeMeta => ({
  volumeId: 'v', nodeId: 'a', blockSize: 4096, size: 1 << 20, role: 'primary', epochs: [{ epoch: 1, nodeId: 'a', startSeq: 1 }],
  headSeq: head, journalTail: 1, consistent: true, syncedOnce: true, resyncRemaining: bitmaps().create([1, 2, 3]), cleanShutdown: true,
  peers: { b: { nodeId: 'b', ackedSeq: head, dirty: bitmaps().create([head]), bitmapValid: true } },
})

t.test('metadata reader fuzz - a mutated metadata file loads a version that was saved, or reports failure', async (t) => {
  const dir = t.testdir()
  const outcome = { loaded: 0, refused: 0 }
  property(t, 'metadata mutated file', fc.property(fc.integer({ min: 1, max: 6 }), flips, fc.option(fc.nat(), { nil: null }), (saves, fl, truncate) => {
    const file = path.join(dir, `m${n++}`)
    const s = MetadataStore.create(file, meta(1))
    for (let g = 2; g <= saves; g++) s.save(meta(g))
    s.close()
    mutateFile(file, fl, truncate)
    let opened: ReturnType<typeof MetadataStore.open>
    try {
      opened = MetadataStore.open(file)
    } catch (err) {
      typed(err, 'open')
      outcome.refused++
      return
    }
    opened.store.close()
    fs.rmSync(file, { force: true })
    if (!opened.load.ok) {
      outcome.refused++
      return
    }
    outcome.loaded++
    const m = opened.load.meta
    const g = opened.load.generation
    if (g < 1 || g > saves) throw new Error(`generation ${g} was never saved`)
    if (m.headSeq !== g || m.peers.b?.dirty.toArray().join() !== String(g) || m.resyncRemaining?.toArray().join() !== '1,2,3') throw new Error(`generation ${g} loaded with content that was not saved: head ${m.headSeq}`)
  }), 150)
  t.comment(`metadata fuzz outcomes: ${JSON.stringify(outcome)}`)
})
