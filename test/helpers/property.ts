import fc from 'fast-check'
import type { Test } from 'tap'
import { runs, testSeed } from './seed.js'

/**
 * Runs a fast-check property as one tap assertion: seeded from PROPERTY_SEED
 * (or a fixed default; printed), `baseRuns` scaled by PROPERTY_RUNS. A failure
 * reports fast-check's shrunk counterexample, its seed and path, so
 * `PROPERTY_SEED=<seed>` replays it.
 */
export function property<Ts>(t: Test, name: string, prop: fc.IProperty<Ts> | fc.IAsyncProperty<Ts>, baseRuns = 100): Promise<void> | void {
  const seed = testSeed(name)
  const params = { seed, numRuns: runs(baseRuns) }
  const report = (err: unknown): void => {
    const cause = (err as { cause?: unknown }).cause
    t.fail(`${name}: ${(err as Error).message}${cause ? `\nfailure: ${String(cause)}` : ''}`)
  }
  if (prop.isAsync()) {
    return fc.assert(prop as fc.IAsyncProperty<Ts>, params).then(() => void t.pass(`${name}: ${params.numRuns} runs`), report)
  }
  try {
    fc.assert(prop as fc.IProperty<Ts>, params)
    t.pass(`${name}: ${params.numRuns} runs`)
  } catch (err) {
    report(err)
  }
}
