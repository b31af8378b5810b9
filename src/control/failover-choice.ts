/**
 * Which standby to promote: a pure function of the nodes' positions (Patroni
 * keeps `_is_healthiest_node` apart from its loop in the same way). Never an
 * inconsistent standby; never one marked `noFailover`; never one further than
 * `maxLagSeqs` behind; another site first when the primary's site is down;
 * then the highest acked head. When nobody qualifies it says why, per node.
 */
export interface Candidate {
  node: string
  site: string
  /** answered within the timeout */
  available: boolean
  /** its site is available */
  siteAvailable: boolean
  role: 'primary' | 'standby' | null
  epoch: number | null
  /** the head the node reports (a standby: the last write it applied durably) */
  headSeq: number | null
  consistent: boolean | null
  noFailover: boolean
}

export interface ChoiceInput {
  failed: { node: string; site: string; /** last head recorded for it */ headSeq: number | null }
  primarySiteDown: boolean
  candidates: readonly Candidate[]
  /** exclude standbys further behind than this (null: no limit) */
  maxLagSeqs: number | null
}

export interface Considered {
  node: string
  eligible: boolean
  why: string
}

export type Choice =
  | { ok: true; node: string; reason: string; considered: Considered[] }
  | { ok: false; reason: string; considered: Considered[] }

export function chooseStandby(input: ChoiceInput): Choice {
  const others = input.candidates.filter(c => c.node !== input.failed.node)
  const heads = others.map(c => c.headSeq ?? -1)
  const reference = Math.max(input.failed.headSeq ?? -1, ...heads)
  const considered: Considered[] = []
  const eligible: Candidate[] = []
  for (const c of others) {
    const why = exclusion(c, reference, input.maxLagSeqs)
    if (why !== null) {
      considered.push({ node: c.node, eligible: false, why })
      continue
    }
    eligible.push(c)
  }
  if (eligible.length === 0) {
    const detail = considered.map(c => `${c.node}: ${c.why}`).join('; ')
    return { ok: false, reason: others.length === 0 ? 'the volume has no standby' : `no standby can be promoted (${detail})`, considered }
  }
  const rank = (c: Candidate): number[] => [
    input.primarySiteDown && c.site === input.failed.site ? 1 : 0,
    c.siteAvailable ? 0 : 1,
    -(c.headSeq as number),
  ]
  const order = input.candidates.map(c => c.node)
  eligible.sort((a, b) => compare(rank(a), rank(b)) || order.indexOf(a.node) - order.indexOf(b.node))
  const best = eligible[0] as Candidate
  for (const c of eligible) {
    considered.push({ node: c.node, eligible: true, why: c === best ? 'chosen' : whyNot(best, c, input) })
  }
  const sitePart = input.primarySiteDown && best.site !== input.failed.site ? `, in site ${best.site} (the primary's site ${input.failed.site} is down)` : ''
  return { ok: true, node: best.node, reason: `${best.node} is the consistent standby with the highest head (${best.headSeq})${sitePart}`, considered }
}

function exclusion(c: Candidate, reference: number, maxLag: number | null): string | null {
  if (!c.available) return 'does not answer'
  if (c.role !== 'standby') return `reports role ${c.role ?? 'unknown'}`
  if (c.consistent !== true) return 'is inconsistent (a resync is incomplete): never promoted automatically'
  if (c.noFailover) return 'is marked noFailover'
  const lag = reference - (c.headSeq ?? 0)
  if (maxLag !== null && lag > maxLag) return `is ${lag} writes behind (more than maxLagSeqs ${maxLag})`
  return null
}

function whyNot(best: Candidate, c: Candidate, input: ChoiceInput): string {
  if (input.primarySiteDown && c.site === input.failed.site && best.site !== input.failed.site) return `in the failed primary's site ${c.site}`
  if (!c.siteAvailable && best.siteAvailable) return `its site ${c.site} is unavailable`
  if ((c.headSeq as number) < (best.headSeq as number)) return `head ${c.headSeq} < ${best.headSeq}`
  return `after ${best.node} in the configured order`
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number)
    if (d !== 0) return d
  }
  return 0
}
