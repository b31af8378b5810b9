/**
 * Model-based property test of the journal (issue 7): the real `Journal`
 * against an in-memory list of records, under random sequences of appends of
 * random sizes (0 to the ring size, so wraps and reclaims that empty the ring
 * happen), reclaims (also failing ones), truncations, resets, syncs, clean
 * close/reopen, and crashes that keep what was synced and a random subset of
 * the 512-byte sectors written since (a torn or partly persisted tail).
 *
 * Crash model: the file content at every point where the journal makes it
 * durable (sync(), syncSync(), the fdatasync a reclaim runs right after
 * onReclaim, truncateAfter(), reset()) is the durable image; a crash keeps
 * the durable image plus, sector by sector, either the old or the new content
 * of every sector written since. The superblocks are always current: the
 * journal writes them with a sync before it returns.
 *
 * Used by test/journal-model.test.ts (short run) and the soak (long run):
 * `runJournalModel({ runs: 2000 })`, or `PROPERTY_RUNS=2000 npx tap test/journal-model.test.ts`.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import { Journal } from '../src/storage/journal.js'
import { HEADER_SIZE, MIN_RING, RING_BASE, recordSize } from '../src/storage/journal-format.js'
import type { JournalEntryInfo, JournalRecord } from '../src/storage/types.js'

const SECTOR = 512
const RINGS = [MIN_RING, 16 * 1024, 64 * 1024, 256 * 1024]

/** A record length: absolute bytes, or a percentage of the largest record the ring takes. */
type Len = { bytes: number } | { pct: number }

export type Op =
  | { op: 'append'; recs: { len: Len; zero: boolean; variant: number }[] }
  | { op: 'appendFailingReclaim'; len: Len }
  /** appends again, identically, the first `n` records the last truncation or crash dropped */
  | { op: 'reappendDropped'; n: number }
  | { op: 'sync'; async: boolean }
  | { op: 'truncate'; pct: number }
  | { op: 'reset'; delta: number }
  | { op: 'reopen' }
  | { op: 'crash'; seed: number }

export interface Scenario {
  ring: number
  ops: Op[]
}

const lenArb: fc.Arbitrary<Len> = fc.oneof(
  { arbitrary: fc.nat(4096).map((bytes) => ({ bytes })), weight: 3 },
  { arbitrary: fc.nat(100).map((pct) => ({ pct })), weight: 2 },
  { arbitrary: fc.constantFrom({ pct: 100 }, { pct: 50 }, { pct: 51 }, { pct: 49 }), weight: 1 },
  // a few fixed sizes, so that a seq re-appended after a crash or a truncation is often the very same record
  { arbitrary: fc.constantFrom({ bytes: 0 }, { bytes: 512 }, { bytes: 1000 }), weight: 2 },
)

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('append' as const), recs: fc.array(fc.record({ len: lenArb, zero: fc.nat(4).map((n) => n === 0), variant: fc.nat(1) }), { minLength: 1, maxLength: 3 }) }), weight: 8 },
  { arbitrary: fc.record({ op: fc.constant('appendFailingReclaim' as const), len: lenArb }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('reappendDropped' as const), n: fc.integer({ min: 1, max: 2 }) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('sync' as const), async: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constant('truncate' as const), pct: fc.nat(100) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('reset' as const), delta: fc.integer({ min: -3, max: 3 }) }), weight: 1 },
  { arbitrary: fc.constant({ op: 'reopen' as const }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('crash' as const), seed: fc.nat() }), weight: 2 },
)

export const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  ring: fc.constantFrom(...RINGS),
  ops: fc.array(opArb, { minLength: 1, maxLength: 40 }),
})

function resolveLen(len: Len, ring: number): number {
  const max = ring - HEADER_SIZE
  return 'bytes' in len ? Math.min(len.bytes, max) : Math.floor((max * len.pct) / 100)
}

/** Payload as a function of (seq, length, variant): re-appending the same seq can produce the very same record. */
function payload(seq: number, length: number, variant: number): Buffer {
  const b = Buffer.alloc(Math.ceil(length / 4) * 4)
  let x = (seq * 2654435761 + length * 40503 + variant * 977) >>> 0 || 1
  for (let i = 0; i < b.length; i += 4) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    b.writeUInt32LE(x, i)
  }
  return b.subarray(0, length)
}

class ModelFailure extends Error {}

function expect(cond: boolean, what: string): void {
  if (!cond) throw new ModelFailure(what)
}

function sameRecord(got: JournalRecord, want: JournalRecord): boolean {
  if (got.seq !== want.seq || got.epoch !== want.epoch || got.offset !== want.offset || got.length !== want.length) return false
  if (want.data === null) return got.data === null
  return got.data !== null && got.data.equals(want.data)
}

function mulberry(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Runs one scenario; throws ModelFailure naming the first disagreement. */
export async function runScenario(sc: Scenario, dir: string): Promise<void> {
  const file = path.join(dir, 'journal')
  fs.rmSync(file, { force: true })
  const ring = sc.ring
  let j = Journal.open(file, { size: ring, create: true })
  // the model: held records oldest first, the next seq, the newest seq known durable
  let held: JournalRecord[] = []
  let nextSeq = 1
  let syncedHead = 0
  let durable = fs.readFileSync(file)
  let failReclaim = false
  let crashed = false
  /** what the last truncation or crash dropped, oldest first */
  let dropped: JournalRecord[] = []

  const tailSeq = (): number => (held.length ? held[0].seq : nextSeq)
  const snapshot = (): void => {
    durable = fs.readFileSync(file)
    syncedHead = nextSeq - 1
  }
  const attach = (jj: Journal): void => {
    jj.onReclaim = (evicted: JournalEntryInfo[]) => {
      if (failReclaim) throw new Error('injected onReclaim failure')
      expect(evicted.length >= 1, 'a reclaim evicts at least one record')
      for (const e of evicted) {
        const m = held.shift()
        expect(m !== undefined && m.seq === e.seq && m.offset === e.offset && m.length === e.length && m.epoch === e.epoch && e.zero === (m.data === null),
          `reclaim evicted seq ${e.seq}, the model's oldest is ${m?.seq}`)
      }
      // the journal fdatasyncs right after onReclaim returns: what is in the file now is durable,
      // that is every record appended before the one that needs the room
      durable = fs.readFileSync(file)
      syncedHead = jj.headSeq
    }
  }
  attach(j)

  const check = (where: string): void => {
    expect(j.headSeq === nextSeq - 1, `${where}: headSeq ${j.headSeq}, model ${nextSeq - 1}`)
    expect(j.tailSeq === tailSeq(), `${where}: tailSeq ${j.tailSeq}, model ${tailSeq()}`)
    expect(j.used <= j.capacity, `${where}: used ${j.used} > capacity ${j.capacity}`)
    const bytes = held.reduce((n, r) => n + recordSize(r.length, r.data === null), 0)
    expect(bytes <= ring, `${where}: model holds ${bytes} bytes in a ${ring}-byte ring`)
    if (held.length) {
      const got = [...j.read(held[0].seq, nextSeq - 1)]
      got.forEach((g, i) => expect(sameRecord(g, held[i]), `${where}: seq ${held[i].seq} reads back different`))
    }
  }

  try {
    for (let i = 0; i < sc.ops.length; i++) {
      const op = sc.ops[i]
      const where = `op ${i} (${JSON.stringify(op)})`
      switch (op.op) {
        case 'append': {
          const recs: JournalRecord[] = op.recs.map((r, k) => {
            const seq = nextSeq + k
            const length = resolveLen(r.len, ring)
            return { seq, epoch: 1, offset: seq * 4096, length, data: r.zero ? null : payload(seq, length, r.variant) }
          })
          // in the model first: a reclaim during the batch may evict the batch's own first records
          held.push(...recs)
          nextSeq += recs.length
          j.appendMany(recs)
          break
        }
        case 'reappendDropped': {
          if (dropped.length === 0 || dropped[0].seq !== nextSeq) break
          const recs = dropped.slice(0, op.n)
          dropped = dropped.slice(op.n)
          held.push(...recs)
          nextSeq += recs.length
          j.appendMany(recs)
          break
        }
        case 'appendFailingReclaim': {
          const length = resolveLen(op.len, ring)
          const rec: JournalRecord = { seq: nextSeq, epoch: 1, offset: 0, length, data: payload(nextSeq, length, 0) }
          failReclaim = true
          held.push(rec)
          nextSeq++
          try {
            j.append(rec)
          } catch (err) {
            expect((err as Error).message === 'injected onReclaim failure', `${where}: append failed with ${(err as Error).message}`)
            held.pop()
            nextSeq--
          } finally {
            failReclaim = false
          }
          break
        }
        case 'sync':
          if (op.async) await j.sync()
          else j.syncSync()
          snapshot()
          break
        case 'truncate': {
          const from = tailSeq() - 1
          const seq = from + Math.floor(((nextSeq - 1 - from) * op.pct) / 100)
          j.truncateAfter(seq)
          dropped = held.filter((r) => r.seq > seq)
          held = held.filter((r) => r.seq <= seq)
          if (seq < nextSeq - 1) nextSeq = seq + 1
          snapshot()
          break
        }
        case 'reset': {
          const next = Math.max(1, nextSeq + op.delta)
          j.reset(next)
          held = []
          nextSeq = next
          snapshot()
          break
        }
        case 'reopen':
          j.close()
          j = Journal.open(file, {})
          attach(j)
          // (a crash may leave a torn record behind the head, reported again until it is overwritten)
          expect(crashed || j.recovery.droppedTornBytes === 0, `${where}: a clean reopen dropped ${j.recovery.droppedTornBytes} torn bytes`)
          break
        case 'crash': {
          j.close()
          crashed = true
          const now = fs.readFileSync(file)
          const rnd = mulberry(op.seed)
          const image = Buffer.from(durable)
          now.copy(image, 0, 0, RING_BASE) // superblocks are synced as they are written
          for (let at = RING_BASE; at < now.length; at += SECTOR) {
            const end = Math.min(at + SECTOR, now.length)
            if (!now.subarray(at, end).equals(durable.subarray(at, end)) && rnd() < 0.5) now.copy(image, at, at, end)
          }
          fs.writeFileSync(file, image)
          j = Journal.open(file, {})
          attach(j)
          const head = j.headSeq
          expect(head >= syncedHead, `${where}: crash lost synced records: head ${head}, synced up to ${syncedHead}`)
          expect(head <= nextSeq - 1, `${where}: crash recovered head ${head} past the model's ${nextSeq - 1}`)
          expect(j.tailSeq === tailSeq(), `${where}: crash moved the tail to ${j.tailSeq}, model ${tailSeq()}`)
          dropped = held.filter((r) => r.seq > head)
          held = held.filter((r) => r.seq <= head)
          nextSeq = head + 1
          durable = image
          syncedHead = head
          break
        }
      }
      check(where)
    }
  } finally {
    j.close()
  }
}

export interface ModelRunResult {
  runs: number
  seed: number
  failed: boolean
  /** fast-check's report with the shrunk counterexample, when failed */
  report: string | null
}

/**
 * Runs the property `runs` times from `seed` (random when absent). The report
 * names the seed and the shrunk counterexample; rerun with the same seed (and
 * `path`) to reproduce.
 */
export async function runJournalModel(opts: { runs: number; seed?: number; dir?: string; path?: string }): Promise<ModelRunResult> {
  const seed = opts.seed ?? (Date.now() ^ (Math.random() * 0x7fffffff)) >>> 0
  const dir = fs.mkdtempSync(path.join(opts.dir ?? os.tmpdir(), 'journal-model-'))
  try {
    const details = await fc.check(
      fc.asyncProperty(scenarioArb, async (sc) => {
        await runScenario(sc, dir)
      }),
      { numRuns: opts.runs, seed, path: opts.path, endOnFailure: false },
    )
    const why = details.errorInstance instanceof Error ? `\nfirst disagreement: ${details.errorInstance.message}` : ''
    return { runs: details.numRuns, seed, failed: details.failed, report: details.failed ? `${fc.defaultReportMessage(details) ?? 'failed'}${why}` : null }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
