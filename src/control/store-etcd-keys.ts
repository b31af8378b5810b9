/**
 * The etcd store's key layout, value decoding and error mapping.
 *
 * Under a prefix (default `/blockrep/`):
 *   leader               the leading controller's id, bound to its etcd lease
 *   volumes/VOLUME       VolumeDoc (JSON); version = the key's mod revision
 *   positions/VOLUME/NODE NodePosition
 *   alarms/ID            Alarm
 *   leases/VOLUME        LeaseRecord
 * Name segments are URI-encoded, so a "/" in a name cannot alias another key.
 */
import { ClientClosedError, EtcdLeaseInvalidError } from 'etcd3'
import { BlockrepError, ErrorCode } from '../util/errors.js'

export const DEFAULT_ETCD_PREFIX = '/blockrep/'

export class EtcdKeys {
  readonly prefix: string

  constructor(prefix: string = DEFAULT_ETCD_PREFIX) {
    this.prefix = prefix.endsWith('/') ? prefix : `${prefix}/`
  }

  leader(): string {
    return `${this.prefix}leader`
  }

  volumes(): string {
    return `${this.prefix}volumes/`
  }

  volume(name: string): string {
    return `${this.volumes()}${enc(name)}`
  }

  positions(volume: string): string {
    return `${this.prefix}positions/${enc(volume)}/`
  }

  position(volume: string, node: string): string {
    return `${this.positions(volume)}${enc(node)}`
  }

  alarms(): string {
    return `${this.prefix}alarms/`
  }

  alarm(id: string): string {
    return `${this.alarms()}${enc(id)}`
  }

  lease(volume: string): string {
    return `${this.prefix}leases/${enc(volume)}`
  }
}

function enc(segment: string): string {
  return encodeURIComponent(segment)
}

/** Parses a stored JSON value; a value blockrep did not write is ERR_PROTOCOL naming the key. */
export function decodeValue<T>(key: string, value: Buffer): T {
  try {
    return JSON.parse(value.toString('utf8')) as T
  } catch (err) {
    throw new BlockrepError(ErrorCode.PROTOCOL, `etcd key ${key} does not hold JSON written by blockrep`, { cause: err, context: { key } })
  }
}

export function encodeValue(value: unknown): string {
  return JSON.stringify(value)
}

/**
 * Our own typed errors pass through; anything the etcd client throws (no
 * connection, deadline exceeded, no quorum, "request timed out") means the
 * store could not be reached in time: ERR_STORE_UNAVAILABLE, with the cause.
 */
export function storeError(err: unknown, op: string): BlockrepError {
  if (err instanceof BlockrepError) return err
  const msg = err instanceof Error ? err.message : String(err)
  return new BlockrepError(ErrorCode.STORE_UNAVAILABLE, `etcd ${op} failed: ${msg}`, { cause: err, context: { op } })
}

/**
 * Runs `fn` once and fails with ERR_STORE_UNAVAILABLE after `timeoutMs`
 * whatever the client does meanwhile, so no store call hangs while etcd has
 * no quorum.
 */
export async function bounded<T>(op: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const work = fn()
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BlockrepError(ErrorCode.STORE_UNAVAILABLE, `etcd ${op}: no answer within ${timeoutMs} ms`, { context: { op, timeoutMs } })), timeoutMs)
  })
  work.catch(() => {})
  try {
    return await Promise.race([work, timeout])
  } catch (err) {
    throw storeError(err, op)
  } finally {
    clearTimeout(timer)
  }
}

/** Errors worth another attempt on another member: anything but our own verdicts and etcd's "lease not found". */
function retryable(err: unknown): boolean {
  if (err instanceof BlockrepError) return false
  if (err instanceof EtcdLeaseInvalidError || err instanceof ClientClosedError) return false
  return true
}

/**
 * Runs `fn(attempt)` until it succeeds, a non-retryable error comes, or
 * `totalMs` is spent (then ERR_STORE_UNAVAILABLE with the last error as the
 * cause). Each attempt carries its own gRPC deadline (the client's call
 * options), and each may land on another member: a dead member, or a
 * request lost with an etcd leader that died, costs one attempt, not the
 * whole call. `attempt` (1-based) tells a write that an earlier attempt may
 * have applied without an answer reaching us.
 */
export async function retrying<T>(op: string, totalMs: number, fn: (attempt: number) => Promise<T>): Promise<T> {
  const end = Date.now() + totalMs
  let last: unknown = null
  for (let attempt = 1; ; attempt++) {
    const left = end - Date.now()
    if (left <= 0) break
    try {
      return await bounded(op, left, () => fn(attempt))
    } catch (err) {
      const timedOut = err instanceof BlockrepError && err.code === ErrorCode.STORE_UNAVAILABLE && err.cause === undefined
      if (timedOut) break // the overall bound fired
      const cause = err instanceof BlockrepError && err.code === ErrorCode.STORE_UNAVAILABLE ? err.cause : err
      if (!retryable(cause)) throw storeError(cause, op)
      last = cause
    }
    await new Promise((r) => setTimeout(r, Math.min(50 * attempt, 250, Math.max(0, end - Date.now()))))
  }
  const why = last instanceof Error ? `; last error: ${last.message}` : ''
  throw new BlockrepError(ErrorCode.STORE_UNAVAILABLE, `etcd ${op}: no answer within ${totalMs} ms${why}`, { cause: last ?? undefined, context: { op, timeoutMs: totalMs } })
}
