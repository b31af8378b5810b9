import type { Controller } from './controller.js'
import type { FailoverRecord } from './failover.js'
import type { SiteHealth } from './health.js'
import type { Alarm, VolumeDoc } from './store.js'

/** `GET /v1/status`: sites, nodes, volumes, alarms, failover timeline, leader. */
export interface ControllerStatus {
  controller: { id: string; term: number | null; startedAt: number; heartbeatMs: number; timeoutMs: number; leaseMs: number; siteThreshold: number; maxLagSeqs: number | null }
  leader: { id: string; term: number } | null
  sites: SiteHealth[]
  nodes: {
    volume: string
    node: string
    site: string
    admin: string
    nbd: string
    available: boolean
    role: string | null
    epoch: number | null
    headSeq: number | null
    consistent: boolean | null
    /** per peer (primary only): acked seq */
    ackedSeqs: Record<string, number>
    /** the primary's head − this node's head (standbys), null when unknown */
    lag: number | null
    lastSeenAt: number | null
    lastError: string | null
    lease: 'supported' | 'unsupported' | 'unknown'
    noFailover: boolean
  }[]
  volumes: (VolumeDoc | { volume: string; published: false })[]
  alarms: { active: Alarm[]; history: Alarm[] }
  failovers: FailoverRecord[]
}

export async function controllerStatus(ctl: Controller): Promise<ControllerStatus> {
  const now = ctl.clock.mono()
  const nodes: ControllerStatus['nodes'] = []
  const volumes: ControllerStatus['volumes'] = []
  for (const v of ctl.volumes.values()) {
    const doc = v.doc?.value ?? null
    volumes.push(doc ?? { volume: v.cfg.id, published: false })
    const primaryHead = doc?.primary ? v.nodes.get(doc.primary.node)?.status?.headSeq ?? null : null
    for (const n of v.nodes.values()) {
      const s = n.status
      nodes.push({
        volume: v.cfg.id, node: n.cfg.node, site: n.cfg.site, admin: n.cfg.admin, nbd: n.cfg.nbd,
        available: ctl.seen(n, now), role: s?.role ?? null, epoch: s?.epoch ?? null, headSeq: s?.headSeq ?? null,
        consistent: s?.consistent ?? null,
        ackedSeqs: s?.role === 'primary' ? Object.fromEntries(s.peers.map(p => [p.node, p.ackedSeq])) : {},
        lag: s && primaryHead !== null && s.role === 'standby' ? Math.max(0, primaryHead - s.headSeq) : null,
        lastSeenAt: n.lastSeenWall, lastError: n.lastError,
        lease: n.leaseSupported === null ? 'unknown' : n.leaseSupported ? 'supported' : 'unsupported',
        noFailover: n.cfg.noFailover,
      })
    }
  }
  return {
    controller: {
      id: ctl.id, term: ctl.lead?.term ?? null, startedAt: ctl.startedWall, heartbeatMs: ctl.cfg.heartbeatMs, timeoutMs: ctl.cfg.timeoutMs,
      leaseMs: ctl.cfg.leaseMs, siteThreshold: ctl.cfg.siteThreshold, maxLagSeqs: ctl.cfg.maxLagSeqs,
    },
    leader: await ctl.store.leader().catch(() => null),
    sites: [...ctl.sites(now).values()],
    nodes,
    volumes,
    alarms: { active: ctl.alarms.active(), history: ctl.alarms.history() },
    failovers: ctl.failovers.map(f => ({ ...f, steps: [...f.steps] })),
  }
}
