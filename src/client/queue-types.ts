import type { Clock } from './clock.js'
import type { ProxyOp, UpstreamReply } from './proxy-ops.js'

/** Where requests go: one upstream connection to the primary of one epoch. */
export interface QueuePath {
  /** the epoch of the configuration that named this node primary */
  readonly epoch: number
  /** node and address, for logs and status */
  readonly label: string
  /** Send one request; resolves with the upstream's reply, rejects when the connection is lost. */
  send(op: ProxyOp): Promise<UpstreamReply>
}

/** pino-compatible subset. */
export interface QueueLogger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

export interface RequestQueueOptions {
  /**
   * dm-multipath's no_path_retry: how many retry intervals requests wait
   * without a working primary before they fail with EIO. 0 fails them at
   * once; Infinity queues forever (queue_if_no_path).
   */
  noPathRetry: number
  retryIntervalMs: number
  /** past this many bytes held (payloads and read buffers), `overLimit` turns true: stop reading clients */
  maxQueuedBytes: number
  clock?: Clock
  log?: QueueLogger
  /** a reply carried a path errno: the owner should close that path and reconnect (the queue stopped using it) */
  onPathFailed?: (path: QueuePath, reason: string) => void
  /** `overLimit` changed */
  onPressure?: (over: boolean) => void
}

export type ItemState = 'queued' | 'sent'

/** One held request, as `GET /status` shows it. */
export interface QueueItemView {
  id: number
  kind: ProxyOp['kind']
  offset: number
  length: number
  state: ItemState
  retries: number
  firstEpoch: number | null
  ageMs: number
  lastError: string | null
}

export interface QueueStats {
  /** requests not yet answered (waiting + in flight) */
  items: number
  waiting: number
  inFlight: number
  bytes: number
  maxQueuedBytes: number
  overLimit: boolean
  oldestAgeMs: number | null
  /** the highest retry count among held requests */
  maxRetries: number
  /** counters since start */
  totalRetries: number
  replayed: number
  completed: number
  failedNoPath: number
  /** the path being used, or null */
  path: { label: string; epoch: number } | null
  /** ms without a working primary (null while one answers) */
  noPathForMs: number | null
  /** true once the no-path bound ran out: requests fail with EIO until a primary answers again */
  failing: boolean
  noPathRetry: number | 'queue'
  retryIntervalMs: number
}
