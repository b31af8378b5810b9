import t from 'tap'
import { runJournalModel } from '../scripts/journal-model.js'

/**
 * The journal against an in-memory model (scripts/journal-model.ts). Short
 * here; `PROPERTY_RUNS=5000 [PROPERTY_SEED=n] npx tap test/journal-model.test.ts`
 * or the soak runs it long. A failure prints the seed and the shrunk
 * counterexample (the ring size and the operations).
 */
t.test('journal - model-based: appends, reclaims, truncations, resets, syncs, reopens and crashes agree with the model', async (t) => {
  const runs = Number(process.env.PROPERTY_RUNS ?? 60)
  const seed = process.env.PROPERTY_SEED !== undefined ? Number(process.env.PROPERTY_SEED) : 0x7e57
  const r = await runJournalModel({ runs, seed, dir: process.env.PROPERTY_DIR })
  if (r.failed) t.comment(r.report ?? '')
  t.notOk(r.failed, `journal model: ${r.runs} runs, seed ${r.seed}${r.failed ? `\n${r.report}` : ''}`)
})
