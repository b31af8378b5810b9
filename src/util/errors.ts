/**
 * One base error with a stable `code` and structured `context`; every module
 * throws a subclass or uses a static factory so callers (and the NBD errno
 * mapper, and the CLI exit-code mapper) can switch on `code`, never on text.
 */
export const ErrorCode = {
  LOCK_HELD: 'ERR_LOCK_HELD',
  VOLUME_SIZE: 'ERR_VOLUME_SIZE',
  OUT_OF_RANGE: 'ERR_OUT_OF_RANGE',
  IO: 'ERR_IO',
  NO_SPACE: 'ERR_NO_SPACE',
  META_CORRUPT: 'ERR_META_CORRUPT',
  META_MISMATCH: 'ERR_META_MISMATCH',
  JOURNAL_CORRUPT: 'ERR_JOURNAL_CORRUPT',
  JOURNAL_FULL: 'ERR_JOURNAL_FULL',
  JOURNAL_RANGE: 'ERR_JOURNAL_RANGE',
  BITMAP_FORMAT: 'ERR_BITMAP_FORMAT',
  FRAME_TOO_LARGE: 'ERR_FRAME_TOO_LARGE',
  FRAME_INVALID: 'ERR_FRAME_INVALID',
  CRC_MISMATCH: 'ERR_CRC_MISMATCH',
  PROTOCOL: 'ERR_PROTOCOL',
  AUTH_FAILED: 'ERR_AUTH_FAILED',
  HANDSHAKE_REFUSED: 'ERR_HANDSHAKE_REFUSED',
  NOT_PRIMARY: 'ERR_NOT_PRIMARY',
  READ_ONLY: 'ERR_READ_ONLY',
  PEER_GONE: 'ERR_PEER_GONE',
  TIMEOUT: 'ERR_TIMEOUT',
  SHUTDOWN: 'ERR_SHUTDOWN',
  CONFIG: 'ERR_CONFIG',
  USAGE: 'ERR_USAGE',
  NBD_PROTOCOL: 'ERR_NBD_PROTOCOL',
  /** a primary under a controller has no valid lease: it refuses writes (invariant 6) */
  LEASE_EXPIRED: 'ERR_LEASE_EXPIRED',
  /** the node knows of a newer epoch than its own, or is fenced by the controller */
  FENCED: 'ERR_FENCED',
  /** a control call named an epoch that is not the node's current one */
  STALE_EPOCH: 'ERR_STALE_EPOCH',
  /** a controller that does not (or no longer) lead tried to change something */
  NOT_LEADER: 'ERR_NOT_LEADER',
  /** a store write lost a compare-and-set race */
  STORE_CONFLICT: 'ERR_STORE_CONFLICT',
  /** the control store (file or etcd) cannot be reached */
  STORE_UNAVAILABLE: 'ERR_STORE_UNAVAILABLE',
  /** no primary can be reached for a volume (nbd-proxy, configuration center) */
  NO_PRIMARY: 'ERR_NO_PRIMARY',
  /** TLS set-up or peer verification failed on a replication link */
  TLS: 'ERR_TLS',
  /** no configuration center answered (client library, nbd-proxy) */
  CENTER_UNAVAILABLE: 'ERR_CENTER_UNAVAILABLE',
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

export interface BlockrepErrorOptions extends ErrorOptions {
  context?: Record<string, unknown>
}

export class BlockrepError extends Error {
  readonly code: ErrorCode
  readonly context: Record<string, unknown>

  constructor(code: ErrorCode, message: string, options: BlockrepErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'BlockrepError'
    this.code = code
    this.context = options.context ?? {}
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, context: this.context }
  }
}

/** True when `err` is a BlockrepError with the given code. */
export function isCode(err: unknown, code: ErrorCode): err is BlockrepError {
  return err instanceof BlockrepError && err.code === code
}
