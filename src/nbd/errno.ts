import { BlockrepError, ErrorCode } from '../util/errors.js'
import { Errno } from './constants.js'

/**
 * The one mapping from an internal error to the errno an NBD simple reply
 * carries (nbdkit's `nbd_errno()`). Anything not recognised is EIO: the
 * client must never see success for a failed operation, and must never get
 * a value it would misread as "retry differently".
 */
export function nbdErrno(err: unknown): number {
  if (!(err instanceof BlockrepError)) return Errno.EIO
  switch (err.code) {
    case ErrorCode.READ_ONLY:
    case ErrorCode.NOT_PRIMARY:
    // refused at admission, nothing written: like a standby's refusal (a write that became durable
    // but lost its lease before the reply is ERR_IO instead, so the client knows the outcome is unknown)
    case ErrorCode.LEASE_EXPIRED:
    case ErrorCode.FENCED:
      return Errno.EPERM
    case ErrorCode.OUT_OF_RANGE:
      return Errno.EINVAL
    case ErrorCode.NO_SPACE:
      return Errno.ENOSPC
    case ErrorCode.SHUTDOWN:
      return Errno.ESHUTDOWN
    default:
      return Errno.EIO
  }
}
