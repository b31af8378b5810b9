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
 * Runs `fn` and fails with ERR_STORE_UNAVAILABLE after `timeoutMs` whatever
 * the client does meanwhile (its retries across members could otherwise add
 * up), so no store call hangs while etcd has no quorum.
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
