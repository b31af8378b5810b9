import type { AgentConfig } from './config.js'
import { formatHostPort } from './config.js'
import { NodeStore } from '../replication/node-store.js'
import { ReplicationNode } from '../replication/replication-node.js'
import type { ReplicationConfig } from '../replication/replication-node.js'
import { VolumeEngine } from '../replication/volume-engine.js'
import { NbdServer } from '../nbd/server.js'
import { BlockrepError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import { AgentMetrics } from './metrics.js'
import { checkInitialised, roleNote } from './startup-checks.js'
import type { AdminTarget, NodeStatus } from './status-types.js'
import { LeaseGuard } from './lease-guard.js'
import { controlStatePath } from './control-state.js'

/** Resync rounds after which client writes are throttled regardless of the gap. */
const MAX_ROUNDS = 30

/** The replication part of an agent config. */
export function replicationConfig(cfg: AgentConfig): ReplicationConfig {
  if (!cfg.secret) throw new BlockrepError('ERR_CONFIG', `config ${cfg.source ?? ''}: "secret" or "secretFile" is required`, { context: { field: 'secret' } })
  const t = cfg.tunables
  return {
    secret: cfg.secret,
    tls: cfg.tls,
    listen: cfg.listen ?? { host: '127.0.0.1', port: 0 },
    peers: cfg.peers.map((p) => ({ node: p.node, address: formatHostPort(p.address), protocol: p.protocol })),
    tunables: {
      windowBytes: t.windowBytes,
      headDeltaMaxBytes: t.headDeltaMaxBytes,
      roundShrinkRatio: t.roundShrinkRatio,
      throttleWritesMiBps: t.throttleWritesMiBps,
      digestRangeBlocks: t.digestRangeBlocks,
      maxRounds: MAX_ROUNDS,
      resyncMaxMiBps: t.resyncMaxMiBps,
      checksumResync: t.checksumResync,
      reconnectMinMs: t.reconnectMinMs,
      reconnectMaxMs: t.reconnectMaxMs,
      heartbeatMs: t.heartbeatMs,
      groupCommitMs: t.groupCommitMs,
      maxBatchBytes: t.maxBatchBytes,
      peerTimeoutMs: t.peerTimeoutMs,
      divergencePolicy: t.divergencePolicy,
    },
  }
}

/**
 * One node's agent: storage opened and recovered, the replication node, the
 * NBD export (read-write on the primary, read-only on a standby) and, wired by
 * the caller, the admin API. `stop()` flushes and marks the metadata clean.
 */
export class Agent {
  readonly metrics: AgentMetrics
  nbd: NbdServer | null = null
  nbdAddress: string | null = null
  /** what the operator should know about how this agent started (shown by `status`) */
  readonly warnings: string[] = []
  /** leases, failsafe and fencing under a controller */
  control: LeaseGuard | null = null
  private stopped: Promise<void> | null = null

  private constructor(
    readonly cfg: AgentConfig,
    readonly store: NodeStore,
    readonly node: ReplicationNode,
    readonly engine: VolumeEngine,
    private readonly log: Logger,
  ) {
    this.metrics = new AgentMetrics({ node: cfg.node })
    node.events = {
      modeChosen: (peer, mode) => this.metrics.modeChosen(peer, mode),
      writeLatency: (s) => this.metrics.observeWriteLatency(s),
    }
  }

  static async start(cfg: AgentConfig, log: Logger): Promise<Agent> {
    checkInitialised(cfg)
    const store = NodeStore.open(
      { data: cfg.data, meta: cfg.meta, journal: cfg.journal },
      { allowCorruptMeta: cfg.role === 'standby', nodeId: cfg.node, blockSize: cfg.tunables.blockSize },
    )
    if (store.meta.nodeId !== cfg.node && store.meta.nodeId !== '') {
      store.close(false)
      throw new BlockrepError('ERR_CONFIG', `${cfg.meta} belongs to node ${store.meta.nodeId}, config says ${cfg.node}`, { context: { field: 'node' } })
    }
    if (cfg.volumeId && store.meta.volumeId && cfg.volumeId !== store.meta.volumeId) {
      store.close(false)
      throw new BlockrepError('ERR_CONFIG', `${cfg.data} holds volume ${store.meta.volumeId}, config says ${cfg.volumeId}: is the config pointing at the wrong disk?`, { context: { field: 'volumeId', found: store.meta.volumeId, expected: cfg.volumeId } })
    }
    if (store.meta.nodeId === '') store.meta.nodeId = cfg.node
    const r = store.recovery
    log.info({ head: store.headSeq, role: store.meta.role, epoch: store.epoch, replayed: r.replayed, droppedTornBytes: r.droppedTornBytes, metaFellBack: r.metaFellBack, metaProblem: r.metaProblem, cleanShutdown: store.meta.cleanShutdown }, 'volume opened')
    if (store.metaCorrupt) log.error({ meta: cfg.meta, problem: r.metaProblem }, 'metadata failed its checksum: this standby will be rebuilt by a FULL sync')
    let node: ReplicationNode
    let guard: LeaseGuard
    try {
      node = new ReplicationNode(store, replicationConfig(cfg), log, { now: () => performance.now(), marginMs: cfg.tunables.leaseMarginMs })
      // before the node serves anything: a controlled or fenced primary must not accept a write in between
      guard = new LeaseGuard({ node, statePath: controlStatePath(cfg.meta), marginMs: cfg.tunables.leaseMarginMs, failsafeMs: cfg.tunables.failsafeMs, log })
      await node.start()
    } catch (err) {
      store.close(false)
      throw err
    }
    const agent = new Agent(cfg, store, node, new VolumeEngine(node, store.meta.volumeId || cfg.node), log)
    const note = roleNote(cfg, store.meta.role)
    if (note !== null) {
      agent.warnings.push(note)
      log.warn({ configRole: cfg.role, metaRole: store.meta.role }, note)
    }
    agent.control = guard
    if (cfg.nbd) {
      try {
        agent.nbd = new NbdServer({ engine: agent.engine, log })
        const { port } = await agent.nbd.listen(cfg.nbd.port, cfg.nbd.host)
        agent.nbdAddress = `${cfg.nbd.host}:${port}`
      } catch (err) {
        await agent.stop()
        throw err
      }
    }
    log.info({ role: store.meta.role, replication: node.listenAddress, nbd: agent.nbdAddress, peers: cfg.peers.map((p) => `${p.node}@${formatHostPort(p.address)}`) }, 'agent started')
    return agent
  }

  status(): NodeStatus {
    const s = this.node.status()
    s.warnings = [...this.warnings]
    s.nbd = this.nbd ? { address: this.nbdAddress, readOnly: this.engine.isReadOnly(), connections: this.nbd.connections } : null
    if (this.control) s.control = this.control.status()
    return s
  }

  /** Clean shutdown: NBD drained, links closed, data and journal flushed, metadata marked clean. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      if (this.nbd) await this.nbd.close().catch((err: Error) => this.log.warn({ err: err.message }, 'closing the NBD export failed'))
      await this.node.close()
      this.store.close(true)
      this.log.info({ head: this.store.headSeq }, 'agent stopped cleanly')
    })()
    return this.stopped
  }
}

/** The admin API's view of an agent. */
export function adminTarget(agent: Agent): AdminTarget {
  const node = agent.node
  return {
    status: () => agent.status(),
    plan: async () => node.plan(),
    promote: (force) => node.promote(force),
    demote: () => node.demote(),
    control: agent.control ?? undefined,
    verify: (peer) => node.verify(peer),
    verifyProgress: (peer) => node.verifyProgress(peer),
    connect: (peer) => node.connect(peer),
    disconnect: (peer) => node.disconnect(peer),
  }
}
