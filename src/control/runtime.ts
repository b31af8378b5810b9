import type { AgentClient, AgentStatusView } from './agent-client.js'
import type { ControllerNodeConfig, ControllerVolumeConfig } from './config.js'
import type { Versioned, VolumeDoc } from './store.js'
import type { Logger } from '../util/log.js'

/** What the controller keeps per node and per volume between evaluations. */

/** Monotonic time for timing decisions, wall time for records. */
export interface Clock {
  mono(): number
  wall(): number
}
export const systemClock: Clock = { mono: () => performance.now(), wall: () => Date.now() }

export interface NodeRuntime {
  volume: string
  cfg: ControllerNodeConfig
  client: AgentClient
  status: AgentStatusView | null
  /** monotonic time of the last answered heartbeat */
  lastAnswerAt: number | null
  lastSeenWall: number | null
  lastError: string | null
  inFlight: boolean
  /** false once the agent answered 404 on the lease endpoint */
  leaseSupported: boolean | null
  /** monotonic time the last lease grant to this node was sent (answered or not) */
  lastGrantSentAt: number | null
  lastDemoteAt: number | null
  /** monotonic time of the last role change the controller made; older heartbeat answers are stale */
  changedAt: number | null
  /** the last position written to the store (without lastSeenAt) and when */
  lastPosition: { key: string; at: number } | null
}

export interface VolumeRuntime {
  cfg: ControllerVolumeConfig
  nodes: Map<string, NodeRuntime>
  doc: Versioned<VolumeDoc> | null
  /** a failover or switchover in progress: decisions wait for it */
  busy: Promise<unknown> | null
  blockedReason: string | null
  /** after a failover, until the old primary is back as a standby */
  recovering: { from: string; to: string; epoch: number } | null
}

/**
 * Sends one `GET /status` to the node unless one is in flight, and records
 * the answer. An answer to a request sent before a role change the controller
 * made (promote, demote) describes the old role and is not kept as the status.
 */
export function heartbeat(n: NodeRuntime, clock: Clock, timeoutMs: number, log: Logger): void {
  if (n.inFlight) return
  n.inFlight = true
  const sentAt = clock.mono()
  n.client.status(timeoutMs).then(
    s => {
      if (n.changedAt === null || sentAt > n.changedAt) n.status = s
      n.lastAnswerAt = clock.mono()
      n.lastSeenWall = clock.wall()
      n.lastError = null
    },
    (err: Error) => {
      if (n.lastError !== err.message) log.debug({ volume: n.volume, node: n.cfg.node, err: err.message }, 'heartbeat failed')
      n.lastError = err.message
    },
  ).finally(() => (n.inFlight = false))
}
