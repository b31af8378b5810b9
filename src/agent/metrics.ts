import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { NodeStatus } from './status-types.js'
import { PEER_STATES } from './status-types.js'

/**
 * Prometheus metrics of one agent, on a registry of its own (several agents
 * may share a process, as in `blockrep demo`). Gauges are filled from a
 * NodeStatus snapshot at scrape time; the engine reports events (write
 * latency, modes chosen, bytes sent) as they happen.
 */
export interface AgentMetricsOptions {
  /** added as a `node` label to every series */
  node?: string
  /** also export Node.js process metrics (process_*, nodejs_*) */
  processMetrics?: boolean
}

/** Write latency buckets in seconds: 50 µs .. 5 s. */
const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

export class AgentMetrics {
  readonly registry: Registry
  private readonly headSeq: Gauge
  private readonly epoch: Gauge
  private readonly consistent: Gauge
  private readonly primary: Gauge
  private readonly journalUsed: Gauge
  private readonly journalCapacity: Gauge
  private readonly peerAckedSeq: Gauge<'peer'>
  private readonly peerLagSeq: Gauge<'peer'>
  private readonly peerLagBytes: Gauge<'peer'>
  private readonly peerState: Gauge<'peer' | 'state'>
  private readonly peerBitmapBlocks: Gauge<'peer'>
  private readonly resyncBlocksTotal: Gauge<'peer'>
  private readonly resyncBlocksDone: Gauge<'peer'>
  private readonly bytesSent: Counter<'peer'>
  /** last bytesSent seen per peer, to turn the status figure into counter increments */
  private readonly sentSeen = new Map<string, number>()
  private readonly modesChosen: Counter<'peer' | 'mode'>
  private readonly writeLatency: Histogram

  constructor(opts: AgentMetricsOptions = {}) {
    const registers = [new Registry()]
    this.registry = registers[0] as Registry
    if (opts.node !== undefined) this.registry.setDefaultLabels({ node: opts.node })
    if (opts.processMetrics === true) collectDefaultMetrics({ register: this.registry })

    this.headSeq = new Gauge({ name: 'blockrep_head_seq', help: 'Newest seq: last write accepted (primary) or durably applied (standby)', registers })
    this.epoch = new Gauge({ name: 'blockrep_epoch', help: 'Current epoch of primaryship', registers })
    this.consistent = new Gauge({ name: 'blockrep_consistent', help: '1 when the local copy is consistent, 0 during an incomplete resync', registers })
    this.primary = new Gauge({ name: 'blockrep_primary', help: '1 when this node is primary, 0 when standby', registers })
    this.journalUsed = new Gauge({ name: 'blockrep_journal_used_bytes', help: 'Bytes of the journal ring in use', registers })
    this.journalCapacity = new Gauge({ name: 'blockrep_journal_capacity_bytes', help: 'Size of the journal ring', registers })
    this.peerAckedSeq = new Gauge({ name: 'blockrep_peer_acked_seq', help: 'Last seq the peer confirmed durable', labelNames: ['peer'], registers })
    this.peerLagSeq = new Gauge({ name: 'blockrep_peer_lag_seq', help: 'Writes not yet acknowledged by the peer', labelNames: ['peer'], registers })
    this.peerLagBytes = new Gauge({ name: 'blockrep_peer_lag_bytes', help: 'Bytes of writes not yet acknowledged by the peer', labelNames: ['peer'], registers })
    this.peerState = new Gauge({ name: 'blockrep_peer_state', help: '1 for the state the peer connection is in, 0 for the others', labelNames: ['peer', 'state'], registers })
    this.peerBitmapBlocks = new Gauge({ name: 'blockrep_peer_bitmap_blocks', help: 'Blocks in the peer\'s dirty bitmap', labelNames: ['peer'], registers })
    this.resyncBlocksTotal = new Gauge({ name: 'blockrep_resync_blocks_total', help: 'Blocks in the current resync round (0 when none runs)', labelNames: ['peer'], registers })
    this.resyncBlocksDone = new Gauge({ name: 'blockrep_resync_blocks_done', help: 'Blocks of the current resync round sent and acknowledged', labelNames: ['peer'], registers })
    this.bytesSent = new Counter({ name: 'blockrep_peer_sent_bytes_total', help: 'Bytes sent to the peer on the wire (frames with headers)', labelNames: ['peer'], registers })
    this.modesChosen = new Counter({ name: 'blockrep_modes_chosen_total', help: 'Catch-up modes chosen by the handshake, by peer and mode', labelNames: ['peer', 'mode'], registers })
    this.writeLatency = new Histogram({ name: 'blockrep_write_latency_seconds', help: 'Client write latency until acknowledged (local journal and sync peers durable)', buckets: LATENCY_BUCKETS, registers })
  }

  /** A client write was acknowledged after `seconds`. */
  observeWriteLatency(seconds: number): void {
    this.writeLatency.observe(seconds)
  }

  /** The handshake chose `mode` (NONE, HEAD_DELTA, BITMAP, FULL, REFUSED) for `peer`. */
  modeChosen(peer: string, mode: string): void {
    this.modesChosen.inc({ peer, mode })
  }

  /** Sets every gauge from a status snapshot; peers no longer listed disappear. */
  update(s: NodeStatus): void {
    this.headSeq.set(s.headSeq)
    this.epoch.set(s.epoch)
    this.consistent.set(s.consistent ? 1 : 0)
    this.primary.set(s.role === 'primary' ? 1 : 0)
    this.journalUsed.set(s.journal.used)
    this.journalCapacity.set(s.journal.capacity)
    for (const g of [this.peerAckedSeq, this.peerLagSeq, this.peerLagBytes, this.peerState, this.peerBitmapBlocks, this.resyncBlocksTotal, this.resyncBlocksDone]) {
      g.reset()
    }
    for (const peer of [...this.sentSeen.keys()]) {
      if (!s.peers.some(p => p.node === peer)) {
        this.bytesSent.remove({ peer })
        this.sentSeen.delete(peer)
      }
    }
    for (const p of s.peers) {
      const peer = p.node
      this.peerAckedSeq.set({ peer }, p.ackedSeq)
      this.peerLagSeq.set({ peer }, p.lagSeq)
      this.peerLagBytes.set({ peer }, p.lagBytes)
      this.peerBitmapBlocks.set({ peer }, p.bitmapBlocks)
      for (const state of PEER_STATES) this.peerState.set({ peer, state }, p.state === state ? 1 : 0)
      this.resyncBlocksTotal.set({ peer }, p.resync?.blocksTotal ?? 0)
      this.resyncBlocksDone.set({ peer }, p.resync?.blocksDone ?? 0)
      const seen = this.sentSeen.get(peer) ?? 0
      // a smaller figure means the source restarted counting: count from there
      const delta = p.bytesSent >= seen ? p.bytesSent - seen : p.bytesSent
      this.bytesSent.inc({ peer }, delta)
      this.sentSeen.set(peer, p.bytesSent)
    }
  }

  /** The Prometheus text exposition, after `update(status)` when a status is given. */
  async render(status?: NodeStatus): Promise<string> {
    if (status !== undefined) this.update(status)
    return this.registry.metrics()
  }

  /** Content-Type of `render()`'s output. */
  get contentType(): string {
    return this.registry.contentType
  }
}
