/**
 * Storage write-path benchmark: how close journal+data writes come to plain
 * sequential writes of the same bytes on the same disk.
 *
 *   baseline      1 MiB fs.writeSync loop, fdatasync every 16 MiB
 *   journal+data  per 1 MiB: journal append + volume write; journal sync every
 *                 16 MiB (group commit); on reclaim the volume is flushed first
 *                 (what the owner's onReclaim must do)
 *   journal only  appends + the same group commit
 *
 * Run: npx tsc -p . && node dist/scripts/bench-storage.js [totalMiB] [dir]
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { Journal } from '../src/storage/journal.js'
import { Volume } from '../src/storage/volume.js'

export interface BenchStorageOptions {
  /** bytes written per phase, in MiB (default 512) */
  totalMiB?: number
  /** write size in MiB (default 1) */
  chunkMiB?: number
  /** group-commit interval in MiB (default 16) */
  syncEveryMiB?: number
  /** journal ring in MiB (default 256: the run wraps it) */
  journalMiB?: number
  /** where the temp files go (default the OS temp dir) */
  dir?: string
  /** rounds of the three phases, interleaved; the median is reported (default 3: virtual disks are noisy) */
  rounds?: number
}

const MiB = 1 << 20

function mibPerSec(bytes: number, ns: bigint): number {
  return bytes / MiB / (Number(ns) / 1e9)
}

interface Phase {
  n: number
  chunk: number
  syncEvery: number
  ringBytes: number
  data: Buffer
  dir: string
}

function plainPhase(p: Phase): number {
  const file = path.join(p.dir, 'plain')
  const fd = fs.openSync(file, 'w')
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < p.n; i++) {
    fs.writeSync(fd, p.data, 0, p.chunk, i * p.chunk)
    if ((i + 1) % p.syncEvery === 0) fs.fdatasyncSync(fd)
  }
  fs.fdatasyncSync(fd)
  const r = mibPerSec(p.n * p.chunk, process.hrtime.bigint() - t0)
  fs.closeSync(fd)
  fs.rmSync(file)
  return r
}

async function journalPhase(p: Phase, withData: boolean): Promise<{ rate: number; reclaims: number }> {
  const vol = withData ? Volume.open(path.join(p.dir, 'data'), { blockSize: 4096, size: p.n * p.chunk, create: true }) : null
  const j = Journal.open(path.join(p.dir, 'journal'), { size: p.ringBytes, create: true })
  let reclaims = 0
  // invariant 1: the data of evicted records must be durable before the journal forgets them
  j.onReclaim = () => {
    reclaims++
    vol?.flushSync()
  }
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < p.n; i++) {
    j.append({ seq: i + 1, epoch: 1, offset: i * p.chunk, length: p.chunk, data: p.data })
    vol?.write(i * p.chunk, p.data)
    if ((i + 1) % p.syncEvery === 0) await j.sync()
  }
  await j.sync()
  await vol?.flush()
  const rate = mibPerSec(p.n * p.chunk, process.hrtime.bigint() - t0)
  j.close()
  vol?.close()
  fs.rmSync(path.join(p.dir, 'journal'))
  if (vol) fs.rmSync(path.join(p.dir, 'data'))
  return { rate, reclaims }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

/** Runs the three phases `rounds` times, interleaved, and returns median MiB/s figures and ratios to the baseline. */
export async function benchStorage(opts: BenchStorageOptions = {}): Promise<Record<string, number>> {
  const totalMiB = opts.totalMiB ?? 512
  const chunk = (opts.chunkMiB ?? 1) * MiB
  const rounds = opts.rounds ?? 3
  const dir = fs.mkdtempSync(path.join(opts.dir ?? os.tmpdir(), 'blockrep-bench-'))
  const p: Phase = {
    n: Math.floor((totalMiB * MiB) / chunk),
    chunk,
    syncEvery: Math.max(1, Math.round(((opts.syncEveryMiB ?? 16) * MiB) / chunk)),
    ringBytes: (opts.journalMiB ?? 256) * MiB,
    data: randomBytes(chunk),
    dir,
  }
  const plain: number[] = []
  const jd: number[] = []
  const jo: number[] = []
  const ratios: number[] = []
  let reclaims = 0
  try {
    for (let r = 0; r < rounds; r++) {
      plain.push(plainPhase(p))
      const withData = await journalPhase(p, true)
      jd.push(withData.rate)
      reclaims = withData.reclaims
      jo.push((await journalPhase(p, false)).rate)
      ratios.push(jd[r] / plain[r])
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return {
    totalMiB,
    rounds,
    plainMiBps: median(plain),
    journalDataMiBps: median(jd),
    journalOnlyMiBps: median(jo),
    journalDataRatio: median(jd) / median(plain),
    journalOnlyRatio: median(jo) / median(plain),
    journalDataRatioWorstRound: Math.min(...ratios),
    reclaims,
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const totalMiB = process.argv[2] ? Number(process.argv[2]) : undefined
  const r = await benchStorage({ totalMiB, dir: process.argv[3] })
  const f = (x: number): string => x.toFixed(1)
  const pct = (x: number): string => `${(x * 100).toFixed(0)}%`
  console.log(`median of ${r.rounds} interleaved rounds of ${r.totalMiB} MiB, 1 MiB writes, fdatasync per 16 MiB`)
  console.log(`plain sequential      ${f(r.plainMiBps)} MiB/s`)
  console.log(`journal + data        ${f(r.journalDataMiBps)} MiB/s  = ${pct(r.journalDataRatio)} of plain (target >= 45%; worst round ${pct(r.journalDataRatioWorstRound)}), ${r.reclaims} reclaims per round`)
  console.log(`journal append alone  ${f(r.journalOnlyMiBps)} MiB/s  = ${pct(r.journalOnlyRatio)} of plain`)
}
