import t from 'tap'
import { planTrial, trialSeed } from '../scripts/soak-plan.js'

t.test('soak-plan - a trial plan depends on the seed and the trial index only', async t => {
  t.same(planTrial(1234, 17, 1 << 25), planTrial(1234, 17, 1 << 25), 'same seed and index: same plan')
  t.not(trialSeed(1234, 17), trialSeed(1234, 18))
  t.not(trialSeed(1234, 17), trialSeed(1235, 17))
  t.notSame(planTrial(1234, 17, 1 << 25).faults, planTrial(1234, 18, 1 << 25).faults)
})

t.test('soak-plan - 200 trials cover every fault kind and phase, both topologies, and small journals', async t => {
  const kinds = new Set<string>()
  const phases = new Set<string>()
  const topologies = new Set<number>()
  const problems: string[] = []
  for (let i = 0; i < 200; i++) {
    const p = planTrial(99, i, 1 << 25)
    topologies.add(p.standbys.length)
    for (const f of p.faults) {
      kinds.add(f.kind)
      phases.add(f.phase)
      if (!p.standbys.includes(f.peer)) problems.push(`trial ${i}: fault on missing ${f.peer}`)
    }
    for (const j of Object.values(p.journals)) if (j < 1 << 20 || j > 64 << 20) problems.push(`trial ${i}: journal ${j}`)
    if (p.standbys.includes('c') && p.protocols.c !== 'async') problems.push(`trial ${i}: c not async`)
    if (p.protocols.b !== 'sync') problems.push(`trial ${i}: b not sync`)
  }
  t.same(problems, [], 'faults hit existing standbys, journals 1-64 MiB, b sync, c async')
  t.same([...kinds].sort(), ['cut', 'delay', 'kill-primary', 'kill-standby', 'stall', 'truncate'])
  t.same([...phases].sort(), ['any', 'handshake', 'streaming', 'syncing'])
  t.same([...topologies].sort(), [1, 2])
})
