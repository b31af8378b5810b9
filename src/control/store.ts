/**
 * The controller's state store: one interface, two implementations (a JSON
 * file for the embedded single controller, etcd for several controllers with
 * one leader). docs/control-plane.md, section 3. The same conformance suite
 * runs against both.
 *
 * Every write goes through a `Leadership`: a store refuses (ERR_NOT_LEADER)
 * a write whose leadership is no longer held, atomically with the write
 * itself (etcd: a transaction comparing the leader key's create revision), so
 * a deposed leader can change nothing. Volume documents are also
 * compare-and-set on their version (ERR_STORE_CONFLICT on a lost race).
 */

/** Where the configuration center says a volume is served (docs/control-plane.md §2). */
export interface VolumeDoc {
  volume: string
  epoch: number
  /** +1 on every change of the document */
  revision: number
  primary: MemberRef | null
  standbys: StandbyRef[]
  /** ms since the Unix epoch */
  updatedAt: number
}

export interface MemberRef {
  node: string
  /** "host:port" of the node's NBD export */
  nbd: string
  /** "host:port" of the node's admin API */
  admin: string
  site: string
}

export interface StandbyRef extends MemberRef {
  consistent: boolean
  ackedSeq: number
  available: boolean
}

/** A node's last known position, recorded at every heartbeat (the "stored position"). */
export interface NodePosition {
  volume: string
  node: string
  role: 'primary' | 'standby'
  epoch: number
  headSeq: number
  consistent: boolean
  /** per peer node id: the last seq that peer confirmed durable (primary only) */
  ackedSeqs: Record<string, number>
  available: boolean
  /** ms epoch of the last answered heartbeat, null if never */
  lastSeenAt: number | null
}

export type AlarmKind =
  | 'primary-down'
  | 'standby-down'
  | 'site-down'
  | 'failover'
  | 'failover-blocked'
  | 'peer-expelled'
  | 'no-backup'

export interface Alarm {
  /** stable per incident, e.g. "vol0/primary-down/a/1733…" */
  id: string
  kind: AlarmKind
  volume: string | null
  node: string | null
  site: string | null
  message: string
  raisedAt: number
  clearedAt: number | null
}

/** The lease the controllers grant a volume's primary; continued by a new leader. */
export interface LeaseRecord {
  volume: string
  node: string
  epoch: number
  leaseMs: number
}

/** A value and the store version it was read at (etcd: mod revision; file: a counter). */
export interface Versioned<T> {
  value: T
  version: number
}

/** Held by the controller that currently leads. */
export interface Leadership {
  /** this candidate's id (controller instance id) */
  readonly id: string
  /** increases with every new leadership (etcd: the leader key's create revision) */
  readonly term: number
  /** false once the store knows (or suspects) the leadership is gone */
  isHeld(): boolean
  /** called once when leadership is lost */
  onLost(cb: (reason: string) => void): void
  resign(): Promise<void>
}

export interface ControlStore {
  /** Resolves when `candidateId` leads (at once for the file store). */
  campaign(candidateId: string, ttlMs: number, signal?: AbortSignal): Promise<Leadership>
  /** Who leads now (null if nobody), for followers and status. */
  leader(): Promise<{ id: string; term: number } | null>

  getVolume(name: string): Promise<Versioned<VolumeDoc> | null>
  listVolumes(): Promise<Versioned<VolumeDoc>[]>
  /** CAS on version (`null`: must not exist yet); returns the new version. */
  putVolume(lead: Leadership, doc: VolumeDoc, expectedVersion: number | null): Promise<number>
  /** Calls `cb` for every change after `afterRevision` of the document, in order. Returns an unsubscribe. */
  watchVolume(name: string, afterRevision: number, cb: (doc: VolumeDoc) => void): () => void

  putPosition(lead: Leadership, pos: NodePosition): Promise<void>
  positions(volume: string): Promise<NodePosition[]>

  putAlarm(lead: Leadership, alarm: Alarm): Promise<void>
  alarms(): Promise<Alarm[]>

  putLease(lead: Leadership, lease: LeaseRecord): Promise<void>
  lease(volume: string): Promise<LeaseRecord | null>

  close(): Promise<void>
}
