/**
 * Randomized soak (`npm run soak`): SOAK_TRIALS trials (default 10), each a
 * fresh primary with one or two standbys (agent processes, small journals so
 * that journal wraps and BITMAP rounds happen), every replication link through
 * a fault-injecting proxy, a writer through NBD keeping a model of what was
 * acknowledged, and a random schedule of faults: kill -9 of either side (the
 * primary restarted in place) during the handshake, a resync, a HEAD_DELTA
 * replay or streaming; link cuts, stalls, delays and mid-frame truncation.
 * See scripts/soak-trial.ts for what is checked after each trial.
 *
 * Seeded: the run's seed is printed; `SOAK_SEED=S` replays the same plans
 * (the timing of processes is not replayable, the schedule is) and
 * `SOAK_TRIAL=k` runs trial k of that seed alone.
 *
 *   SOAK_TRIALS=200 SOAK_SEED=1234 npm run soak
 *   SOAK_MAX_WRITE=1M        cap the write size (default: the export's maximum, 32 MiB)
 *   SOAK_KEEP=1              keep the folders (volumes, configs, agent logs) of failed trials
 *   SOAK_PROPERTY=1          then run the long property and fuzz tests (test files whose
 *                            name matches SOAK_PROPERTY_FILES, default /(property|fuzz|model).*\.test\.ts$/)
 *                            with PROPERTY_RUNS / FUZZ_RUNS (default 20000) and PROPERTY_SEED
 *
 * Ends with `soak: N trials, F failures, seed S`; exit code 1 when F > 0.
 */
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { Limits } from '../src/nbd/constants.js'
import { parseSize } from '../src/util/size.js'
import { describePlan, planTrial } from './soak-plan.js'
import { abortTrial, runTrial } from './soak-trial.js'
import type { Failure } from './soak-trial.js'

function envInt(name: string, dflt: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`)
  return n
}

const say = (m: string) => process.stderr.write(`${m}\n`)

async function main(): Promise<number> {
  const trials = envInt('SOAK_TRIALS', 10)
  const seed = envInt('SOAK_SEED', (Date.now() ^ (process.pid << 8)) >>> 0)
  const only = process.env.SOAK_TRIAL === undefined ? null : envInt('SOAK_TRIAL', 0)
  const maxWrite = process.env.SOAK_MAX_WRITE ? parseSize(process.env.SOAK_MAX_WRITE, { field: 'SOAK_MAX_WRITE' }) : Limits.MAX_PAYLOAD
  const keep = process.env.SOAK_KEEP === '1'
  say(`soak: seed ${seed}, ${only === null ? `${trials} trials` : `trial ${only} only`}, writes up to ${maxWrite} bytes`)

  const indexes = only === null ? [...Array(trials).keys()] : [only]
  const perKind = new Map<string, number>()
  const modes = new Map<string, number>()
  const failed: { index: number; seed: number; failures: Failure[]; dir: string | null }[] = []
  let acked = 0
  let ackedBytes = 0
  let largest = 0
  let unaligned = 0
  const t0 = Date.now()
  for (const i of indexes) {
    const plan = planTrial(seed, i, maxWrite)
    say(`trial ${i} (trial seed ${plan.seed}): ${describePlan(plan)}`)
    const r = await runTrial(plan, keep, say)
    for (const f of r.fired) perKind.set(f, (perKind.get(f) ?? 0) + 1)
    for (const m of r.modes) modes.set(m, (modes.get(m) ?? 0) + 1)
    acked += r.writer.acked
    ackedBytes += r.writer.ackedBytes
    largest = Math.max(largest, r.writer.largest)
    unaligned += r.writer.unaligned
    say(`trial ${i}: ${r.ok ? 'ok' : `FAILED (${r.failures.length})`} in ${(r.ms / 1000).toFixed(1)} s; ${r.writer.acked} writes acked (${(r.writer.ackedBytes / 2 ** 20).toFixed(1)} MiB, largest ${r.writer.largest}), ${r.writer.failed} failed; modes ${r.modes.join(' ') || '-'}${r.dir ? `; kept ${r.dir}` : ''}`)
    if (!r.ok) failed.push({ index: i, seed: plan.seed, failures: r.failures, dir: r.dir })
  }
  const seconds = (Date.now() - t0) / 1000

  console.log(`\nsoak: ${indexes.length} trials in ${seconds.toFixed(0)} s (${(seconds / Math.max(1, indexes.length)).toFixed(1)} s per trial)`)
  console.log(`writes acknowledged: ${acked} (${(ackedBytes / 2 ** 20).toFixed(0)} MiB, largest ${largest} bytes, ${unaligned} not 512-aligned)`)
  console.log(`catch-up modes chosen: ${[...modes].sort().map(([m, n]) => `${m} ${n}`).join(', ') || 'none'}`)
  console.log('faults injected (kind@phase):')
  const kinds = new Map<string, number>()
  for (const [k, n] of [...perKind].sort()) {
    console.log(`  ${k.padEnd(34)} ${n}`)
    const kind = k.split('@')[0] as string
    kinds.set(kind, (kinds.get(kind) ?? 0) + n)
  }
  console.log(`faults per kind: ${[...kinds].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`)
  for (const f of failed) {
    console.log(`FAILED trial ${f.index} (reproduce: SOAK_SEED=${seed} SOAK_TRIAL=${f.index} npm run soak)${f.dir ? `, kept ${f.dir}` : ''}`)
    for (const x of f.failures) console.log(`  [${x.triage}] ${x.what.split('\n')[0]}`)
  }

  let failures = failed.length
  if (process.env.SOAK_PROPERTY === '1') failures += runPropertyTests(seed)
  console.log(`soak: ${indexes.length} trials, ${failures} failures, seed ${seed}`)
  return failures
}

/** The long runs of the property and fuzz tests (whatever test files carry those names). Returns 1 on failure. */
function runPropertyTests(seed: number): number {
  const pattern = new RegExp(process.env.SOAK_PROPERTY_FILES ?? '(property|fuzz|model).*\\.test\\.ts$')
  const files = readdirSync('test').filter((f) => pattern.test(f)).map((f) => `test/${f}`)
  if (files.length === 0) {
    console.log(`property: no test files match ${pattern}`)
    return 0
  }
  const runs = process.env.PROPERTY_RUNS ?? '20000'
  const env = { ...process.env, PROPERTY_RUNS: runs, FUZZ_RUNS: process.env.FUZZ_RUNS ?? runs, PROPERTY_SEED: process.env.PROPERTY_SEED ?? String(seed) }
  console.log(`property: ${files.join(' ')} with PROPERTY_RUNS=${env.PROPERTY_RUNS} FUZZ_RUNS=${env.FUZZ_RUNS} PROPERTY_SEED=${env.PROPERTY_SEED}`)
  const r = spawnSync('npx', ['tap', '--timeout', '3600', '--disable-coverage', ...files], { stdio: 'inherit', env })
  console.log(`property: ${r.status === 0 ? 'passed' : `FAILED (exit ${r.status})`}`)
  return r.status === 0 ? 0 : 1
}

// an interrupted soak stops its agents and removes its folder before it goes
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    say(`soak: ${sig}, stopping the running trial`)
    void abortTrial().finally(() => process.exit(130))
  })
}
process.exitCode = (await main()) > 0 ? 1 : 0
