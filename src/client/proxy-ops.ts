import { Errno } from '../nbd/constants.js'
import { BlockrepError, ErrorCode } from '../util/errors.js'

/** One client request as the proxy forwards it: what the NBD session handed to the engine. */
export type ProxyOp =
  | { kind: 'read'; offset: number; length: number }
  | { kind: 'write'; offset: number; data: Buffer; fua: boolean }
  | { kind: 'writeZeroes'; offset: number; length: number; fua: boolean }
  | { kind: 'trim'; offset: number; length: number }
  | { kind: 'flush' }

export type ProxyOpKind = ProxyOp['kind']

/** How an upstream answered: its errno (0 = success) and, for a successful read, the data. */
export interface UpstreamReply {
  errno: number
  data?: Buffer
}

/** Bytes a request holds in the proxy's memory while it waits: its payload, or the data it will read. */
export function opBytes(op: ProxyOp): number {
  switch (op.kind) {
    case 'write':
      return op.data.length
    case 'read':
      return op.length
    default:
      return 0
  }
}

export function opOffset(op: ProxyOp): number {
  return op.kind === 'flush' ? 0 : op.offset
}

export function opLength(op: ProxyOp): number {
  switch (op.kind) {
    case 'write':
      return op.data.length
    case 'flush':
      return 0
    default:
      return op.length
  }
}

/**
 * Errnos that say "this node cannot serve the volume now" rather than "this
 * request is wrong": EPERM (a standby, a demoted or fenced primary), EIO (a
 * primary without a lease), ESHUTDOWN (an agent stopping). Like
 * dm-multipath's path errors they are retried on the next primary; any other
 * errno (EINVAL, ENOSPC, …) is the answer and goes back to the client.
 */
export const PATH_ERRNOS: ReadonlySet<number> = new Set([Errno.EPERM, Errno.EIO, Errno.ESHUTDOWN])

/** The error to throw from the proxy's BlockEngine so that `nbdErrno()` gives the client `errno`. */
export function errorForErrno(errno: number, message: string): BlockrepError {
  const code = ({
    [Errno.EPERM]: ErrorCode.READ_ONLY,
    [Errno.EINVAL]: ErrorCode.OUT_OF_RANGE,
    [Errno.ENOSPC]: ErrorCode.NO_SPACE,
    [Errno.ESHUTDOWN]: ErrorCode.SHUTDOWN,
  } as Record<number, ErrorCode>)[errno] ?? ErrorCode.IO
  return new BlockrepError(code, message, { context: { errno } })
}
