/**
 * The agent's status, plan and verify shapes: produced by the replication
 * engine, served as JSON by the admin API (docs/status.md), rendered by the CLI.
 * Times are milliseconds since the Unix epoch; sizes are bytes.
 */

/** Where a peer connection stands, in the order a healthy one goes through them. */
export const PeerState = {
  CONNECTING: 'connecting',
  HANDSHAKE: 'handshake',
  SYNCING: 'syncing',
  STREAMING: 'streaming',
  DISCONNECTED: 'disconnected',
} as const
export type PeerState = (typeof PeerState)[keyof typeof PeerState]
export const PEER_STATES: readonly PeerState[] = Object.values(PeerState)

/** Progress of a long-running block walk (resync round, verify). */
export interface ProgressFigures {
  blocksTotal: number
  blocksDone: number
  bytesDone: number
  /** ms epoch */
  startedAt: number
  rateBytesPerSec: number
  /** null while unknown (nothing done yet) */
  etaSeconds: number | null
}

/** A BITMAP or FULL resync in progress towards one peer (round k of the bitmap rounds). */
export interface ResyncProgress extends ProgressFigures {
  mode: 'BITMAP' | 'FULL'
  round: number
  /** the primary head this round's blocks were frozen at (writes after it follow in the next round or as HEAD_DELTA) */
  frozenSeq?: number
}

/** The handshake's last decision for a peer (the MODE message). */
export interface LastMode {
  /** NONE | HEAD_DELTA | BITMAP | FULL, or REFUSED when the handshake refused */
  mode: string
  reason: string
  blocks: number
  bytes: number
  /** ms epoch */
  at: number
}

export interface PeerStatus {
  node: string
  /** "host:port" */
  address: string
  protocol: 'sync' | 'async'
  state: PeerState
  lastMode: LastMode | null
  /** last seq the peer confirmed durable */
  ackedSeq: number
  /** headSeq - ackedSeq */
  lagSeq: number
  /** payload bytes of the writes in (ackedSeq, headSeq] */
  lagBytes: number
  /** blocks in this peer's dirty bitmap */
  bitmapBlocks: number
  resync: ResyncProgress | null
  lastError: string | null
  /** bytes this node sent to the peer on the wire (frames with headers), since the agent started */
  bytesSent: number
  /** ms epoch of `lastError` */
  lastErrorAt?: number | null
  /**
   * What keeps this link from working right now, in words (a refusal, an
   * unreachable peer, a failed authentication); null while it connects
   * normally, syncs or streams. `lastError` stays as history once the link is up.
   */
  fault?: string | null
  /** ms epoch: when the link entered `state` */
  stateSince?: number
  /** `outgoing`: this node dials the peer (primary → standby); `incoming`: the peer dials this node (a standby's primary) */
  direction?: 'outgoing' | 'incoming'
  /**
   * false while `ackedSeq` is only what this node recorded before it started
   * (the peer has not confirmed its position since): the real figure may be
   * higher and `lagSeq`/`lagBytes` lower
   */
  ackedConfirmed?: boolean
  /** incoming peers: the last time this node heard from the peer (its HELLO), or tried to */
  contact?: PeerContact | null
}

/** What a standby last learned of a configured peer by contacting it or being contacted. */
export interface PeerContact {
  /** ms epoch */
  at: number
  reachable: boolean
  /** the role the peer announced, when reachable */
  role: 'primary' | 'standby' | null
  /** why it could not be reached or authenticated */
  error: string | null
}

export interface JournalStatus {
  tailSeq: number
  headSeq: number
  /** bytes */
  capacity: number
  /** bytes */
  used: number
}

export interface NbdStatus {
  /** "host:port", or null when not exported */
  address: string | null
  readOnly: boolean
  connections: number
}

export interface NodeStatus {
  node: string
  volumeId: string
  role: 'primary' | 'standby'
  epoch: number
  headSeq: number
  consistent: boolean
  size: number
  blockSize: number
  journal: JournalStatus
  peers: PeerStatus[]
  nbd: NbdStatus | null
  /** ms epoch */
  upSince: number
  /** things the operator should know about how the agent runs, in words (e.g. the config's role ignored) */
  warnings?: string[]
  /** lease, failsafe and fencing (docs/control-plane.md §1); absent from engines without a control API */
  control?: {
    controlled: boolean
    controller: string | null
    term: number
    lease: { valid: boolean; remainingMs: number; holder: string } | null
    failsafe: { active: boolean; remainingMs: number | null; confirmedBy: string[] }
    fenced: { epoch: number; reason: string; since: number } | null
    writable: boolean
  }
}

/** What the handshake would choose now for one peer (`blockrep plan`). */
export interface PlanEntry {
  node: string
  mode: string
  reason: string
  blocks: number
  bytes: number
}

/** The outcome of comparing this node's data with a peer's, block by block. */
export interface VerifyResult {
  peer: string
  blocksCompared: number
  /** ascending block numbers whose content differs */
  differingBlocks: number[]
  seconds: number
}

/**
 * A verify run as the admin API tracks it: started by POST /verify, polled by
 * GET /verify?peer=X. The last finished job per peer is kept until the next start.
 */
export interface VerifyJob {
  peer: string
  state: 'running' | 'done' | 'failed'
  /** ms epoch */
  startedAt: number
  finishedAt: number | null
  /** while running, when the target reports it */
  progress: ProgressFigures | null
  /** when state is "done" */
  result: VerifyResult | null
  /** when state is "failed" */
  error: { code: string; message: string } | null
}

/**
 * What the admin API drives: implemented by the agent (the replication
 * engine). Methods throw BlockrepError; its code travels to the client.
 */
export interface AdminTarget {
  status(): NodeStatus
  plan(): Promise<PlanEntry[]>
  /** Become primary in a new epoch; `force` allows it while inconsistent or with a primary peer reachable. `alreadyPrimary`: it already was primary, nothing changed. */
  promote(force: boolean): Promise<{ epoch: number; alreadyPrimary?: boolean }>
  /** `alreadyStandby`: it already was a standby, nothing changed. */
  demote(): Promise<{ alreadyStandby: boolean }>
  /** Compares the whole volume with the peer; resolves when done (may take long). */
  verify(peer: string): Promise<VerifyResult>
  /** Progress of a running verify, or null when none runs / unknown. */
  verifyProgress?(peer: string): ProgressFigures | null
  connect(peer: string): Promise<void>
  disconnect(peer: string): Promise<void>
  /** controller calls (leases, controlled promote/demote); absent: /v1/control/* answer 404 */
  control?: {
    lease(body: Record<string, unknown>): Promise<Record<string, unknown>>
    release(): Promise<Record<string, unknown>>
    promote(body: Record<string, unknown>): Promise<Record<string, unknown>>
    demote(body: Record<string, unknown>): Promise<Record<string, unknown>>
  }
}
