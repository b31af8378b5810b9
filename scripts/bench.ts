/**
 * `npm run bench`: runs every benchmark in sequence and prints one summary
 * table — name, figure, baseline (measured in the same run), ratio, target,
 * PASS/FAIL. Exit code 1 when a target is missed or a bench fails.
 *
 *   node dist/scripts/bench.js [storage] [bitmap] [streaming] [head-delta] [catch-up] [failover] [--rounds N]
 *
 * With no names, all run. See docs/benchmarks.md for what each figure means.
 */
import { benchStorage } from './bench-storage.js'
import { benchBitmap } from './bench-bitmap.js'
import { benchCatchUp, benchHeadDelta, benchStreaming } from './bench-replication.js'
import { benchFailover } from './bench-failover.js'
import { fmtBytes, fmtMiBps, fmtMs, msSince, passed, summaryTable } from './bench-lib.js'
import type { Row } from './bench-lib.js'

const NAMES = ['storage', 'bitmap', 'streaming', 'head-delta', 'catch-up', 'failover'] as const
type Name = (typeof NAMES)[number]

const args = process.argv.slice(2)
const roundsAt = args.indexOf('--rounds')
const rounds = roundsAt >= 0 ? Number(args[roundsAt + 1]) : undefined
const picked = args.filter((a, i) => !a.startsWith('--') && (roundsAt < 0 || i !== roundsAt + 1))
for (const p of picked) if (!(NAMES as readonly string[]).includes(p)) throw new Error(`unknown bench "${p}"; one of ${NAMES.join(', ')}`)
const want = (n: Name): boolean => picked.length === 0 || picked.includes(n)

const rows: Row[] = []
const failures: string[] = []

async function stage(name: Name, body: () => Promise<void>): Promise<void> {
  if (!want(name)) return
  process.stderr.write(`\n== ${name}\n`)
  const t0 = performance.now()
  try {
    await body()
  } catch (e) {
    failures.push(`${name}: ${(e as Error).stack ?? String(e)}`)
    rows.push({ name, figure: 'error', baseline: '-', ratio: NaN, target: 0, higherIsBetter: true })
  }
  process.stderr.write(`== ${name} took ${fmtMs(msSince(t0))}\n`)
}

await stage('storage', async () => {
  const r = await benchStorage({ rounds })
  process.stderr.write(`${JSON.stringify(r)}\n`)
  rows.push({
    name: 'storage: journal+data / plain writes',
    figure: fmtMiBps(r.journalDataMiBps),
    baseline: fmtMiBps(r.plainMiBps),
    ratio: r.journalDataRatio,
    target: 0.45,
    higherIsBetter: true,
  })
})

await stage('bitmap', async () => {
  const r = await benchBitmap()
  process.stderr.write(`${JSON.stringify(r)}\n`)
  for (const kind of ['native', 'native-free']) {
    for (const [key, what] of [
      ['memoryMiB', 'memory'],
      ['serializedMiB', 'on disk'],
    ] as const) {
      const v = r[`${kind}.${key}`]
      rows.push({
        name: `bitmap ${kind}: 1 TiB, 1% dirty, ${what}`,
        figure: `${v.toFixed(2)} MiB`,
        baseline: '8 MiB budget',
        ratio: v / 8,
        target: 1,
        higherIsBetter: false,
      })
    }
  }
})

await stage('streaming', async () => {
  const r = await benchStreaming({ rounds })
  process.stderr.write(`${JSON.stringify(r)}\n`)
  const none = fmtMiBps(r.noPeerMiBps)
  rows.push({ name: `streaming: async standby / no peer (rounds ${r.asyncRatioMin.toFixed(2)}..${r.asyncRatioMax.toFixed(2)})`, figure: fmtMiBps(r.asyncMiBps), baseline: none, ratio: r.asyncRatio, target: 0.8, higherIsBetter: true })
  rows.push({ name: 'streaming: sync standby / no peer', figure: fmtMiBps(r.syncMiBps), baseline: none, ratio: r.syncRatio, target: 0.45, higherIsBetter: true })
  process.stderr.write(`cores busy (agents + client, of ${r.hostCores}): no peer ${r.noPeerCores.toFixed(2)}, async ${r.asyncCores.toFixed(2)}, sync ${r.syncCores.toFixed(2)}; async standby up to ${fmtBytes(r.asyncMaxLagBytes)} behind\n`)
  const pipe = fmtMiBps(r.pipeMiBps)
  rows.push({ name: 'streaming: no peer / raw socket pipe', figure: none, baseline: pipe, ratio: r.noPeerVsPipe, target: 0, higherIsBetter: true, info: true })
  rows.push({ name: 'streaming: async standby / raw pipe', figure: fmtMiBps(r.asyncMiBps), baseline: pipe, ratio: r.asyncVsPipe, target: 0, higherIsBetter: true, info: true })
  rows.push({ name: 'streaming: sync standby / raw pipe', figure: fmtMiBps(r.syncMiBps), baseline: pipe, ratio: r.syncVsPipe, target: 0, higherIsBetter: true, info: true })
})

await stage('head-delta', async () => {
  const r = await benchHeadDelta()
  process.stderr.write(`${JSON.stringify(r)}\n`)
  rows.push({
    name: `HEAD_DELTA: wire bytes / gap bytes (incl. ${r.handshakeBytes} B handshake)`,
    figure: fmtBytes(r.wireBytes),
    baseline: fmtBytes(r.gapBytes),
    ratio: r.ratio,
    target: 1.05,
    higherIsBetter: false,
  })
})

await stage('catch-up', async () => {
  const r = await benchCatchUp()
  process.stderr.write(`${JSON.stringify(r)}\n`)
  // the catch-up proper runs from the standby's agent being up to "in sync"; a standby that
  // reconnects after a network cut pays no process start, so that part is reported apart
  rows.push({
    name: `catch-up 4 GiB, 1% dirty: FULL / BITMAP, standby up → in sync (${r.bitmapBlocks} vs ${r.fullBlocks} blocks)`,
    figure: fmtMs(r.bitmapMs - r.agentStartMs),
    baseline: fmtMs(r.fullMs - r.fullAgentStartMs),
    ratio: r.ratioAfterStart,
    target: 30,
    higherIsBetter: true,
  })
  rows.push({
    name: `catch-up incl. the agent process start (${fmtMs(r.agentStartMs)}, ${fmtMs(r.fullAgentStartMs)})`,
    figure: fmtMs(r.bitmapMs),
    baseline: fmtMs(r.fullMs),
    ratio: r.ratio,
    target: 30,
    higherIsBetter: true,
    info: true,
  })
})

await stage('failover', async () => {
  const r = await benchFailover()
  process.stderr.write(`${JSON.stringify(r)}\n`)
  const x = (ms: number): string => `${(ms / r.heartbeatMs).toFixed(1)} × heartbeatMs, ${(ms / r.timeoutMs).toFixed(2)} × timeoutMs`
  rows.push({ name: `failover: kill -9 → detected (${x(r.detectedMs)})`, figure: fmtMs(r.detectedMs), baseline: `timeoutMs ${r.timeoutMs} ms`, ratio: r.detectedMs / r.timeoutMs, target: 0, higherIsBetter: true, info: true })
  rows.push({ name: `failover: kill -9 → published (${x(r.publishedMs)})`, figure: fmtMs(r.publishedMs), baseline: `timeoutMs ${r.timeoutMs} ms`, ratio: r.publishedMs / r.timeoutMs, target: 3, higherIsBetter: false })
  rows.push({ name: `failover: kill -9 → first write on the new primary (${x(r.firstWriteMs)}; lease ${r.leaseMs} ms)`, figure: fmtMs(r.firstWriteMs), baseline: `timeoutMs ${r.timeoutMs} ms`, ratio: r.firstWriteMs / r.timeoutMs, target: 3, higherIsBetter: false })
})

console.log()
console.log(summaryTable(rows))
const failed = rows.filter((r) => !passed(r))
console.log()
console.log(failed.length === 0 ? 'all targets met' : `${failed.length} of ${rows.filter((r) => !r.info).length} targets missed`)
for (const f of failures) console.error(`\nbench failed: ${f}`)
process.exitCode = failed.length === 0 && failures.length === 0 ? 0 : 1
