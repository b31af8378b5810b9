import { BlockrepError, ErrorCode } from '../util/errors.js'
import { Cmd, InfoType, Limits, Magic, Size } from './constants.js'

/**
 * NBD wire codec: bytes ⇄ typed frames, nothing but Buffers. The decoder is
 * fed with `push(chunk)` and drained with `next()`; it is pull-out rather than
 * `write(chunk): Frame[]` because what follows an option (more options, or
 * requests) depends on the session's answer to it (a failed NBD_OPT_GO stays
 * in option haggling), so the session switches phase between frames.
 */

export interface ClientFlagsFrame {
  type: 'clientFlags'
  flags: number
}

export interface OptionFrame {
  type: 'option'
  option: number
  data: Buffer
}

export interface RequestFrame {
  type: 'request'
  flags: number
  command: number
  /** the 8 opaque bytes the reply must echo */
  cookie: Buffer
  /** u64 on the wire; values past 2^53 lose precision but stay past any export's end */
  offset: number
  length: number
  /** the payload, present for WRITE only */
  data?: Buffer
}

export type Frame = ClientFlagsFrame | OptionFrame | RequestFrame

export type DecoderPhase = 'clientFlags' | 'options' | 'transmission'

export interface DecoderLimits {
  maxOptionLength: number
  maxPayload: number
}

/** A violation that leaves the byte stream untrustworthy: the caller disconnects. */
export function nbdProtocolError(message: string, context: Record<string, unknown> = {}): BlockrepError {
  return new BlockrepError(ErrorCode.NBD_PROTOCOL, message, { context })
}

/** FIFO of received chunks; takes exact byte counts without re-concatenating everything. */
class ByteQueue {
  private chunks: Buffer[] = []
  private head = 0
  length = 0

  push(chunk: Buffer): void {
    if (chunk.length === 0) return
    this.chunks.push(chunk)
    this.length += chunk.length
  }

  /** Remove and return exactly n bytes (n ≤ length); zero-copy when one chunk holds them. */
  take(n: number): Buffer {
    const first = this.chunks[0]
    if (first !== undefined && first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n)
      this.advance(n)
      return out
    }
    const out = Buffer.allocUnsafe(n)
    let filled = 0
    while (filled < n) {
      const c = this.chunks[0] as Buffer
      const k = Math.min(n - filled, c.length - this.head)
      c.copy(out, filled, this.head, this.head + k)
      filled += k
      this.advance(k)
    }
    return out
  }

  private advance(n: number): void {
    this.length -= n
    this.head += n
    const c = this.chunks[0]
    if (c !== undefined && this.head === c.length) {
      this.chunks.shift()
      this.head = 0
    }
  }

  clear(): void {
    this.chunks = []
    this.head = 0
    this.length = 0
  }
}

/**
 * Push decoder for the client → server direction.
 *
 * clientFlags:  C: u32 flags
 * options:      C: u64 IHAVEOPT, u32 option, u32 length, length × data
 * transmission: C: u32 0x25609513, u16 flags, u16 type, u64 cookie,
 *                  u64 offset, u32 length, (length × data if WRITE)
 *
 * `next()` throws an ERR_NBD_PROTOCOL BlockrepError on a bad magic, an option
 * longer than `maxOptionLength`, or a WRITE longer than `maxPayload` (its
 * payload cannot be trusted or skipped safely); the stream is dead after that.
 */
export class NbdDecoder {
  private readonly queue = new ByteQueue()
  private phaseNow: DecoderPhase = 'clientFlags'
  private pendingOption: { option: number; length: number } | undefined
  private pendingRequest: RequestFrame | undefined
  private readonly limits: DecoderLimits

  constructor(limits: Partial<DecoderLimits> = {}) {
    this.limits = {
      maxOptionLength: limits.maxOptionLength ?? Limits.MAX_OPTION_LENGTH,
      maxPayload: limits.maxPayload ?? Limits.MAX_PAYLOAD,
    }
  }

  get phase(): DecoderPhase {
    return this.phaseNow
  }

  /** Bytes received but not yet returned as (part of) a frame. */
  get bufferedBytes(): number {
    return this.queue.length
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk)
  }

  /** After a successful NBD_OPT_GO / NBD_OPT_EXPORT_NAME. */
  enterTransmission(): void {
    this.phaseNow = 'transmission'
  }

  /** Drop everything buffered (after DISC or a fatal error). */
  discard(): void {
    this.queue.clear()
    this.pendingOption = undefined
    this.pendingRequest = undefined
  }

  /** The next complete frame, or undefined when more bytes are needed. */
  next(): Frame | undefined {
    switch (this.phaseNow) {
      case 'clientFlags':
        if (this.queue.length < 4) return undefined
        this.phaseNow = 'options'
        return { type: 'clientFlags', flags: this.queue.take(4).readUInt32BE(0) }
      case 'options':
        return this.nextOption()
      case 'transmission':
        return this.nextRequest()
    }
  }

  private nextOption(): OptionFrame | undefined {
    if (this.pendingOption === undefined) {
      if (this.queue.length < Size.OPTION_HEADER) return undefined
      const h = this.queue.take(Size.OPTION_HEADER)
      const magic = h.readBigUInt64BE(0)
      if (magic !== Magic.IHAVEOPT) {
        throw nbdProtocolError('bad option magic', { magic: magic.toString(16) })
      }
      const option = h.readUInt32BE(8)
      const length = h.readUInt32BE(12)
      if (length > this.limits.maxOptionLength) {
        throw nbdProtocolError('option too long', { option, length, max: this.limits.maxOptionLength })
      }
      this.pendingOption = { option, length }
    }
    const { option, length } = this.pendingOption
    if (this.queue.length < length) return undefined
    this.pendingOption = undefined
    return { type: 'option', option, data: length === 0 ? Buffer.alloc(0) : this.queue.take(length) }
  }

  private nextRequest(): RequestFrame | undefined {
    if (this.pendingRequest === undefined) {
      if (this.queue.length < Size.REQUEST) return undefined
      const h = this.queue.take(Size.REQUEST)
      const magic = h.readUInt32BE(0)
      if (magic !== Magic.REQUEST) {
        throw nbdProtocolError('bad request magic', { magic: magic.toString(16) })
      }
      const frame: RequestFrame = {
        type: 'request',
        flags: h.readUInt16BE(4),
        command: h.readUInt16BE(6),
        // copy: the header may be a view into a large socket chunk we do not want to pin
        cookie: Buffer.from(h.subarray(8, 16)),
        offset: Number(h.readBigUInt64BE(16)),
        length: h.readUInt32BE(24),
      }
      if (frame.command !== Cmd.WRITE) return frame
      if (frame.length > this.limits.maxPayload) {
        throw nbdProtocolError('write payload too large', { length: frame.length, max: this.limits.maxPayload })
      }
      this.pendingRequest = frame
    }
    const frame = this.pendingRequest
    if (this.queue.length < frame.length) return undefined
    this.pendingRequest = undefined
    frame.data = frame.length === 0 ? Buffer.alloc(0) : this.queue.take(frame.length)
    return frame
  }
}

/** S: u64 NBDMAGIC, u64 IHAVEOPT, u16 handshake flags */
export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.alloc(Size.GREETING)
  b.writeBigUInt64BE(Magic.NBDMAGIC, 0)
  b.writeBigUInt64BE(Magic.IHAVEOPT, 8)
  b.writeUInt16BE(handshakeFlags, 16)
  return b
}

/** S: u64 0x3e889045565a9, u32 option, u32 reply type, u32 length, data */
export function encodeOptionReply(option: number, replyType: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(Size.OPTION_REPLY_HEADER + data.length)
  b.writeBigUInt64BE(Magic.OPTION_REPLY, 0)
  b.writeUInt32BE(option, 8)
  b.writeUInt32BE(replyType, 12)
  b.writeUInt32BE(data.length, 16)
  data.copy(b, Size.OPTION_REPLY_HEADER)
  return b
}

/** NBD_REP_SERVER data: u32 name length, name (the length is not optional: qemu needs it) */
export function encodeServerEntry(name: string): Buffer {
  const n = Buffer.from(name, 'utf8')
  const b = Buffer.alloc(4 + n.length)
  b.writeUInt32BE(n.length, 0)
  n.copy(b, 4)
  return b
}

/** NBD_REP_INFO data for NBD_INFO_EXPORT: u16 0, u64 size, u16 transmission flags */
export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const b = Buffer.alloc(12)
  b.writeUInt16BE(InfoType.EXPORT, 0)
  b.writeBigUInt64BE(BigInt(size), 2)
  b.writeUInt16BE(transmissionFlags, 10)
  return b
}

/** NBD_REP_INFO data for NBD_INFO_BLOCK_SIZE: u16 3, u32 minimum, u32 preferred, u32 maximum */
export function encodeInfoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14)
  b.writeUInt16BE(InfoType.BLOCK_SIZE, 0)
  b.writeUInt32BE(min, 2)
  b.writeUInt32BE(preferred, 6)
  b.writeUInt32BE(max, 10)
  return b
}

/** Reply to NBD_OPT_EXPORT_NAME: u64 size, u16 transmission flags, 124 zero bytes unless NO_ZEROES */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(Size.EXPORT_NAME_REPLY + (noZeroes ? 0 : Size.ZERO_PAD))
  b.writeBigUInt64BE(BigInt(size), 0)
  b.writeUInt16BE(transmissionFlags, 8)
  return b
}

/** S: u32 0x67446698, u32 error, u64 cookie (data for a successful READ follows separately) */
export function encodeSimpleReply(cookie: Buffer, error: number): Buffer {
  const b = Buffer.alloc(Size.SIMPLE_REPLY)
  b.writeUInt32BE(Magic.SIMPLE_REPLY, 0)
  b.writeUInt32BE(error, 4)
  cookie.copy(b, 8, 0, 8)
  return b
}

export interface InfoRequest {
  name: string
  /** the NBD_INFO_* types the client asked for */
  infos: number[]
}

/**
 * NBD_OPT_INFO / NBD_OPT_GO data: u32 name length, name, u16 n, n × u16 info.
 * Undefined when the lengths do not add up (the caller answers ERR_INVALID).
 */
export function parseInfoRequest(data: Buffer): InfoRequest | undefined {
  if (data.length < 6) return undefined
  const nameLength = data.readUInt32BE(0)
  if (nameLength > data.length - 6) return undefined
  const name = data.toString('utf8', 4, 4 + nameLength)
  const count = data.readUInt16BE(4 + nameLength)
  const rest = 6 + nameLength
  if (data.length !== rest + 2 * count) return undefined
  const infos: number[] = []
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(rest + 2 * i))
  return { name, infos }
}

// Client-side encoders: what a client sends. Used by the byte-level tests.

/** C: u64 IHAVEOPT, u32 option, u32 length, data */
export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(Size.OPTION_HEADER + data.length)
  b.writeBigUInt64BE(Magic.IHAVEOPT, 0)
  b.writeUInt32BE(option, 8)
  b.writeUInt32BE(data.length, 12)
  data.copy(b, Size.OPTION_HEADER)
  return b
}

/** C: data for NBD_OPT_INFO / NBD_OPT_GO */
export function encodeInfoRequest(name: string, infos: number[] = []): Buffer {
  const n = Buffer.from(name, 'utf8')
  const b = Buffer.alloc(6 + n.length + 2 * infos.length)
  b.writeUInt32BE(n.length, 0)
  n.copy(b, 4)
  b.writeUInt16BE(infos.length, 4 + n.length)
  infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i))
  return b
}

export interface RequestHeader {
  flags?: number
  command: number
  cookie: Buffer | bigint
  offset: number | bigint
  length: number
}

/** C: u32 magic, u16 flags, u16 type, u64 cookie, u64 offset, u32 length (payload not included) */
export function encodeRequest(r: RequestHeader): Buffer {
  const b = Buffer.alloc(Size.REQUEST)
  b.writeUInt32BE(Magic.REQUEST, 0)
  b.writeUInt16BE(r.flags ?? 0, 4)
  b.writeUInt16BE(r.command, 6)
  if (typeof r.cookie === 'bigint') b.writeBigUInt64BE(r.cookie, 8)
  else r.cookie.copy(b, 8, 0, 8)
  b.writeBigUInt64BE(BigInt(r.offset), 16)
  b.writeUInt32BE(r.length, 24)
  return b
}
