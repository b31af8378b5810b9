import type { AlarmCondition } from './alarms.js'
import type { SiteHealth } from './health.js'

/** A snapshot of what the alarms depend on. */
export interface ConditionInput {
  /** true during the first timeoutMs after the controller started: nobody is reported down yet */
  grace: boolean
  sites: readonly SiteHealth[]
  volumes: readonly {
    id: string
    /** the published primary, null when none is published */
    primary: string | null
    nodes: readonly { node: string; site: string; available: boolean; lastError: string | null }[]
    blockedReason: string | null
    recovering: { from: string; to: string; epoch: number } | null
  }[]
}

/**
 * The conditions that hold now (docs/controller.md "Alarms"), a pure function
 * of the snapshot; the AlarmBook turns them into raised and cleared alarms.
 */
export function alarmConditions(i: ConditionInput): AlarmCondition[] {
  const out: AlarmCondition[] = []
  if (!i.grace) {
    for (const s of i.sites) {
      if (!s.available) out.push({ kind: 'site-down', volume: null, node: null, site: s.site, message: `site ${s.site} is unavailable: ${s.up}/${s.total} nodes answer (needs at least ${s.threshold * 100}%)` })
    }
  }
  for (const v of i.volumes) {
    if (!i.grace && v.primary === null) {
      out.push({ kind: 'primary-down', volume: v.id, node: null, site: null, message: `volume ${v.id} has no primary: no node reports role primary` })
    }
    for (const n of v.nodes) {
      if (i.grace || n.available) continue
      const isPrimary = v.primary === n.node
      out.push({
        kind: isPrimary ? 'primary-down' : 'standby-down', volume: v.id, node: n.node, site: n.site,
        message: `${isPrimary ? 'primary' : 'standby'} ${n.node} of ${v.id} (site ${n.site}) does not answer: ${n.lastError ?? 'no heartbeat yet'}`,
      })
    }
    if (v.blockedReason !== null) out.push({ kind: 'failover-blocked', volume: v.id, node: v.primary, site: null, message: `failover of ${v.id} blocked: ${v.blockedReason}` })
    if (v.recovering !== null) {
      const r = v.recovering
      out.push({ kind: 'failover', volume: v.id, node: r.from, site: null, message: `${v.id} failed over from ${r.from} to ${r.to} (epoch ${r.epoch}); cleared when ${r.from} is back as a standby` })
    }
  }
  return out
}
