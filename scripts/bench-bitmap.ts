/**
 * Dirty-bitmap bench: a 1 TiB volume in 4 KiB blocks (268,435,456 blocks)
 * with 1% of the blocks dirty at random (2,684,354 distinct blocks), for
 * CRoaring and for the native-free TypeScript Roaring. Reports memory
 * (memoryBytes, and what the process measurably spent), serialized size, and
 * the time to build, iterate, serialize and deserialize. Target: <= 8 MiB in
 * memory and on disk. Also: a whole-volume addRange (a FULL resync's
 * remaining set).
 *
 *   npx tsc -p . && node dist/scripts/bench-bitmap.js
 */
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { nativeBitmaps, nativeFreeBitmaps } from '../src/storage/bitmaps.js'
import type { BitmapFactory, BlockBitmap } from '../src/storage/types.js'

const VOLUME_BLOCKS = 2 ** 40 / 4096
const DIRTY = Math.floor(VOLUME_BLOCKS / 100)
const MiB = 2 ** 20

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** mulberry32, so every run dirties the same blocks. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** DIRTY distinct random blocks, in random order. */
function dirtyBlocks(): Uint32Array {
  const r = rng(2026)
  const seen = new Uint32Array(VOLUME_BLOCKS / 32)
  const out = new Uint32Array(DIRTY)
  for (let n = 0; n < DIRTY; ) {
    const b = Math.floor(r() * VOLUME_BLOCKS)
    const m = 1 << (b & 31)
    if ((seen[b >>> 5] & m) !== 0) continue
    seen[b >>> 5] |= m
    out[n++] = b
  }
  return out
}

function addonMemory(): number {
  try {
    return (createRequire(import.meta.url)('roaring') as { getRoaringUsedMemory(): number }).getRoaringUsedMemory()
  } catch {
    return 0
  }
}

/**
 * Bytes the process holds once garbage is gone: JS heap, array buffers, and
 * CRoaring's allocations. Backing stores and addon objects are released by
 * finalizers after a GC, so collect and yield until the figure settles.
 */
async function held(): Promise<number> {
  let last = Number.NaN
  for (let i = 0; i < 20; i++) {
    gc()
    await new Promise(resolve => setTimeout(resolve, 20))
    const m = process.memoryUsage()
    const now = m.heapUsed + m.arrayBuffers + addonMemory()
    if (Math.abs(now - last) < 64 * 1024) return now
    last = now
  }
  return last
}

/** Wall-clock and CPU time since a mark: CI machines are shared, and CPU time is what the code costs. */
interface Mark {
  wall: number
  cpu: NodeJS.CpuUsage
}

function mark(): Mark {
  return { wall: performance.now(), cpu: process.cpuUsage() }
}

function record(out: Record<string, number>, key: string, since: Mark): void {
  const cpu = process.cpuUsage(since.cpu)
  out[`${key}Ms`] = performance.now() - since.wall
  out[`${key}CpuMs`] = (cpu.user + cpu.system) / 1000
}

async function run(f: BitmapFactory, blocks: Uint32Array, out: Record<string, number>): Promise<void> {
  const k = f.kind
  const base = await held()
  let t0 = mark()
  const b: BlockBitmap = f.create()
  for (let i = 0; i < blocks.length; i++) b.add(blocks[i])
  record(out, `${k}.build`, t0)
  out[`${k}.measuredMiB`] = ((await held()) - base) / MiB
  out[`${k}.memoryMiB`] = b.memoryBytes() / MiB
  if (b.size !== blocks.length) throw new Error(`${k}: size ${b.size}, expected ${blocks.length}`)

  t0 = mark()
  let n = 0
  let last = -1
  for (const v of b) {
    if (v <= last) throw new Error(`${k}: iteration not ascending at ${v}`)
    last = v
    n++
  }
  record(out, `${k}.iterate`, t0)
  if (n !== blocks.length) throw new Error(`${k}: iterated ${n}`)

  t0 = mark()
  const buf = b.serialize()
  record(out, `${k}.serialize`, t0)
  out[`${k}.serializedMiB`] = buf.length / MiB

  t0 = mark()
  const back = f.deserialize(buf)
  record(out, `${k}.deserialize`, t0)
  if (back.size !== b.size) throw new Error(`${k}: deserialized size ${back.size}`)

  const full = f.create()
  full.addRange(0, VOLUME_BLOCKS)
  out[`${k}.fullVolumeMemoryKiB`] = full.memoryBytes() / 1024
  out[`${k}.fullVolumeSerializedKiB`] = full.serialize().length / 1024
}

/** Runs the bench for both implementations; figures keyed `<kind>.<measure>`. */
export async function benchBitmap(): Promise<Record<string, number>> {
  const blocks = dirtyBlocks()
  const out: Record<string, number> = { volumeBlocks: VOLUME_BLOCKS, dirtyBlocks: DIRTY }
  for (const f of [nativeBitmaps, nativeFreeBitmaps]) await run(f, blocks, out)
  return out
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await benchBitmap()
  console.log(`1 TiB volume, 4 KiB blocks: ${r.volumeBlocks} blocks, ${r.dirtyBlocks} dirty (1%)`)
  const rows = ['memoryMiB', 'measuredMiB', 'serializedMiB']
  for (const step of ['build', 'iterate', 'serialize', 'deserialize']) rows.push(`${step}Ms`, `${step}CpuMs`)
  rows.push('fullVolumeMemoryKiB', 'fullVolumeSerializedKiB')
  console.log(`${'measure'.padEnd(24)}${'native'.padStart(12)}${'native-free'.padStart(14)}`)
  for (const row of rows) {
    console.log(`${row.padEnd(24)}${r[`native.${row}`].toFixed(2).padStart(12)}${r[`native-free.${row}`].toFixed(2).padStart(14)}`)
  }
  const worst = Math.max(r['native.memoryMiB'], r['native-free.memoryMiB'], r['native.serializedMiB'], r['native-free.serializedMiB'])
  console.log(worst <= 8 ? 'within the 8 MiB target' : `OVER the 8 MiB target (${worst.toFixed(2)} MiB)`)
}
