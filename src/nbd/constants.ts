/**
 * NBD protocol numbers (doc/proto.md of NetworkBlockDevice/nbd) as `as const`
 * tables with derived union types, plus name tables for logs. All fields on
 * the wire are big-endian.
 */

export const Magic = {
  /** 'NBDMAGIC', first 8 bytes of the server greeting */
  NBDMAGIC: 0x4e42444d41474943n,
  /** 'IHAVEOPT', in the greeting and before every client option */
  IHAVEOPT: 0x49484156454f5054n,
  OPTION_REPLY: 0x3e889045565a9n,
  REQUEST: 0x25609513,
  SIMPLE_REPLY: 0x67446698,
} as const

/** Handshake flags the server sends (u16). */
export const HandshakeFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const
export type HandshakeFlag = (typeof HandshakeFlag)[keyof typeof HandshakeFlag]

/** Client flags (u32); any other bit means: drop the connection. */
export const ClientFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const
export type ClientFlag = (typeof ClientFlag)[keyof typeof ClientFlag]
export const CLIENT_FLAGS_KNOWN = ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES

export const Option = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const
export type Option = (typeof Option)[keyof typeof Option]

const ERR = 0x80000000
export const OptReply = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: ERR + 1,
  ERR_POLICY: ERR + 2,
  ERR_INVALID: ERR + 3,
  ERR_PLATFORM: ERR + 4,
  ERR_TLS_REQD: ERR + 5,
  ERR_UNKNOWN: ERR + 6,
  ERR_SHUTDOWN: ERR + 7,
  ERR_BLOCK_SIZE_REQD: ERR + 8,
  ERR_TOO_BIG: ERR + 9,
} as const
export type OptReply = (typeof OptReply)[keyof typeof OptReply]

/** Information types for NBD_OPT_INFO / NBD_OPT_GO (u16). */
export const InfoType = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const
export type InfoType = (typeof InfoType)[keyof typeof InfoType]

/** Transmission flags (u16), sent with the export size. */
export const TransFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
} as const
export type TransFlag = (typeof TransFlag)[keyof typeof TransFlag]

export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const
export type Cmd = (typeof Cmd)[keyof typeof Cmd]

export const CmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
} as const
export type CmdFlag = (typeof CmdFlag)[keyof typeof CmdFlag]

/** Error values in simple replies (Linux errno numbers, fixed by the protocol). */
export const Errno = {
  OK: 0,
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const
export type Errno = (typeof Errno)[keyof typeof Errno]

/** Hard limits; going past one is a protocol error (disconnect) unless noted. */
export const Limits = {
  /** largest READ/WRITE payload; READ past it → EINVAL, WRITE past it → disconnect */
  MAX_PAYLOAD: 32 * 1024 * 1024,
  /** largest option data during the handshake */
  MAX_OPTION_LENGTH: 64 * 1024,
  /** options per connection before we decide the client is looping */
  MAX_OPTIONS: 128,
  /** longest export name we look up (the spec's MUST limit) */
  MAX_NAME_LENGTH: 4096,
} as const

export const Size = {
  GREETING: 18,
  OPTION_HEADER: 16,
  OPTION_REPLY_HEADER: 20,
  REQUEST: 28,
  SIMPLE_REPLY: 16,
  EXPORT_NAME_REPLY: 10,
  ZERO_PAD: 124,
} as const

function invert<T extends Record<string, number>>(table: T): Record<number, string> {
  const out: Record<number, string> = {}
  for (const [k, v] of Object.entries(table)) out[v] = k
  return out
}

export const OptionName = invert(Option)
export const OptReplyName = invert(OptReply)
export const CmdName = invert(Cmd)
export const ErrnoName = invert(Errno)

/** Log-friendly name for a numeric value, e.g. `nameOf(CmdName, 1)` → 'WRITE'. */
export function nameOf(table: Record<number, string>, value: number): string {
  return table[value] ?? `UNKNOWN(${value})`
}
