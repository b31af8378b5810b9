/**
 * What one soak trial does, drawn from its seed alone (so `SOAK_SEED=S
 * SOAK_TRIAL=k` replays the same plan): the nodes, journal sizes, tunables,
 * writer settings and the fault schedule.
 */
import { xorshift } from './bench-lib.js'

const MiB = 1 << 20

export type FaultKind = 'kill-primary' | 'kill-standby' | 'cut' | 'stall' | 'truncate' | 'delay'
/** the replication phase a fault waits for before it fires ('any': fire at once) */
export type TargetPhase = 'any' | 'handshake' | 'syncing' | 'streaming'

export interface PlannedFault {
  kind: FaultKind
  /** the standby whose link (or process) is hit; for kill-primary, whose link phase is watched */
  peer: string
  phase: TargetPhase
  /** ms to wait before looking for the phase */
  afterMs: number
  /** down time (kills), stall or delay length */
  holdMs: number
  /** truncate: bytes kept of the cut chunk; delay: ms per chunk */
  amount: number
  /** truncate: which way */
  dir: 'up' | 'down' | 'any'
}

export interface TrialPlan {
  index: number
  seed: number
  size: number
  standbys: string[]
  /** per node: journal ring bytes */
  journals: Record<string, number>
  /** per standby: sync or async */
  protocols: Record<string, 'sync' | 'async'>
  depth: number
  /** writer rate cap in MiB/s (0: as fast as it goes); a cap keeps outages' gaps small enough for HEAD_DELTA */
  rateMiBps: number
  maxWrite: number
  resyncMaxMiBps: number
  checksumResync: boolean
  headDeltaMaxBytes: number
  /** let the first FULL finish before the faults start (otherwise most faults hit it) */
  syncFirst: boolean
  faults: PlannedFault[]
}

/** A well-mixed 32-bit seed for trial `index` of a run seeded `seed`. */
export function trialSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0
  return (h ^ (h >>> 16)) >>> 0 || 1
}

export function planTrial(seed: number, index: number, maxWrite: number): TrialPlan {
  const s = trialSeed(seed, index)
  const rnd = xorshift(s)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T
  const between = (lo: number, hi: number) => Math.floor(lo + rnd() * (hi - lo + 1))
  const standbys = rnd() < 0.3 ? ['b', 'c'] : ['b']
  const journals: Record<string, number> = {}
  for (const n of ['a', ...standbys]) journals[n] = pick([1, 2, 4, 8, 16, 64]) * MiB
  const protocols: Record<string, 'sync' | 'async'> = { b: 'sync' }
  if (standbys.includes('c')) protocols.c = 'async'
  const kinds: FaultKind[] = ['kill-primary', 'kill-standby', 'kill-standby', 'cut', 'stall', 'truncate', 'truncate', 'delay']
  const phases: TargetPhase[] = ['any', 'handshake', 'syncing', 'streaming']
  const faults: PlannedFault[] = []
  const n = between(2, 4)
  for (let i = 0; i < n; i++) {
    const kind = pick(kinds)
    faults.push({
      kind,
      peer: pick(standbys),
      phase: pick(phases),
      afterMs: between(50, 500),
      holdMs: kind === 'stall' ? between(100, 4000) : kind === 'delay' ? between(200, 1000) : between(30, 800),
      amount: kind === 'truncate' ? between(0, 40) : between(5, 80),
      dir: pick(['up', 'down', 'any'] as const),
    })
  }
  return {
    index,
    seed: s,
    size: 40 * MiB,
    standbys,
    journals,
    protocols,
    depth: between(1, 8),
    rateMiBps: pick([2, 4, 8, 16]),
    maxWrite,
    resyncMaxMiBps: pick([0, 0, 20, 60]),
    checksumResync: rnd() < 0.3,
    headDeltaMaxBytes: pick([256 * 1024, MiB, 8 * MiB]),
    syncFirst: rnd() < 0.6,
    faults,
  }
}

export function describePlan(p: TrialPlan): string {
  const j = Object.entries(p.journals).map(([n, b]) => `${n} ${b / MiB}M`).join(' ')
  const peers = p.standbys.map((s) => `${s} (${p.protocols[s]})`).join(', ')
  return `primary a, standbys ${peers}; journals ${j}; depth ${p.depth}, ${p.rateMiBps || 'unlimited'} MiB/s${p.syncFirst ? '; faults after the first sync' : ''}; resync ${p.resyncMaxMiBps || 'unlimited'} MiB/s${p.checksumResync ? ', checksum' : ''}; faults ${p.faults.map((f) => `${f.kind}(${f.peer})@${f.phase}`).join(', ')}`
}
