/*
 * Frame layout (DESIGN.md, Streaming: frames):
 *
 *   offset 0  u32 BE  headerLength   (> 0, <= limits.maxHeader)
 *   offset 4  u32 BE  payloadLength  (<= limits.maxPayload)
 *   offset 8  header  msgpack map, one Message (fields in schema order, see validate.ts)
 *   then      payload raw bytes, payloadLength of them (block data; never msgpack-encoded)
 *
 * The codec only turns bytes into validated frames and back; it knows no
 * sockets (transport.ts) and no session state.
 */
import { Packr, Unpackr } from 'msgpackr'
import { BlockrepError, ErrorCode } from '../util/errors.js'
import { validateMessage, validatePayloadLength } from './validate.js'
import type { Frame, Message } from './messages.js'

export const PREFIX_BYTES = 8
const U32_MAX = 0xffffffff

export interface CodecLimits {
  /** Largest header accepted. META carries serialized bitmaps in its header, hence the large default. */
  maxHeader: number
  /** Largest payload accepted. */
  maxPayload: number
}

/** Limits once the peer is authenticated: 64 MiB headers (META bitmaps), 64 MiB payloads. */
export const DEFAULT_LIMITS: Readonly<CodecLimits> = Object.freeze({ maxHeader: 64 << 20, maxPayload: 64 << 20 })

/**
 * Limits for the unauthenticated part of the handshake (HELLO, AUTH, AUTH_OK,
 * ERROR): small headers and no payload, so an unauthenticated peer cannot make
 * us buffer 128 MiB. Raise them with `setLimits(DEFAULT_LIMITS)` after AUTH_OK.
 */
export const HANDSHAKE_LIMITS: Readonly<CodecLimits> = Object.freeze({ maxHeader: 64 << 10, maxPayload: 0 })

const packr = new Packr({ useRecords: false, variableMapSize: true })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' })

const EMPTY = Buffer.alloc(0)

function toBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)
}

/**
 * Encode a frame as `[prefix+header, payload]`: the payload is referenced, not
 * copied (an empty Buffer when there is none; writing it is harmless). The message is
 * validated first, so a malformed outgoing message fails here, at the sender.
 * @throws BlockrepError ERR_FRAME_INVALID, ERR_FRAME_TOO_LARGE
 */
export function encodeFrame(msg: Message, payload?: Uint8Array): [Buffer, Buffer] {
  const body = payload === undefined ? EMPTY : toBuffer(payload)
  const clean = validateMessage(msg)
  validatePayloadLength(clean, body.length)
  const header = packr.pack(clean)
  if (header.length > U32_MAX || body.length > U32_MAX) {
    throw new BlockrepError(ErrorCode.FRAME_TOO_LARGE, `${msg.type}: frame does not fit the u32 length fields`, {
      context: { type: msg.type, headerLength: header.length, payloadLength: body.length },
    })
  }
  const head = Buffer.allocUnsafe(PREFIX_BYTES + header.length)
  head.writeUInt32BE(header.length, 0)
  head.writeUInt32BE(body.length, 4)
  header.copy(head, PREFIX_BYTES)
  return [head, body]
}

/** Encode a frame into one contiguous Buffer (copies the payload; for tests and small frames). */
export function encodeFrameBuffer(msg: Message, payload?: Uint8Array): Buffer {
  const [head, body] = encodeFrame(msg, payload)
  return body.length === 0 ? head : Buffer.concat([head, body])
}

/** Decode one header (msgpack) and validate it. @throws ERR_FRAME_INVALID */
export function decodeHeader(header: Uint8Array): Message {
  let obj: unknown
  try {
    obj = unpackr.unpack(toBuffer(header))
  } catch (err) {
    throw new BlockrepError(ErrorCode.FRAME_INVALID, `frame header is not valid msgpack: ${(err as Error).message}`, {
      cause: err,
      context: { type: '?', field: 'header', headerLength: header.byteLength },
    })
  }
  return validateMessage(obj)
}

const enum State {
  Prefix,
  Header,
  Payload,
}

/**
 * Push decoder: feed it socket chunks, get whole frames back.
 *
 * It never concatenates the pending input: a header or payload that lies
 * inside one chunk is returned as a subarray of that chunk (zero copy); one
 * that spans chunks is copied once into a buffer allocated at its final size
 * as its bytes arrive. Chunks are therefore referenced by the frames they
 * produced and must not be reused by the caller (Node's socket chunks never are).
 *
 * Limits are checked on the 8-byte prefix, before any header or payload byte is
 * buffered. After a throw the decoder is poisoned: every later push throws the
 * same error.
 */
export class FrameDecoder {
  private limits: CodecLimits
  private state = State.Prefix
  private readonly prefix = Buffer.alloc(PREFIX_BYTES)
  private prefixFill = 0
  private headerLength = 0
  private payloadLength = 0
  private msg: Message | null = null
  /** the header or payload being assembled across chunks */
  private part: Buffer | null = null
  private partFill = 0
  private failed: BlockrepError | null = null

  constructor(limits: Partial<CodecLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits }
  }

  /** Change the limits; applies to the next prefix read (e.g. HANDSHAKE_LIMITS → DEFAULT_LIMITS after AUTH_OK). */
  setLimits(limits: Partial<CodecLimits>): void {
    this.limits = { ...this.limits, ...limits }
  }

  /** Bytes of an incomplete frame held so far. */
  get buffered(): number {
    switch (this.state) {
      case State.Prefix:
        return this.prefixFill
      case State.Header:
        return PREFIX_BYTES + this.partFill
      case State.Payload:
        return PREFIX_BYTES + this.headerLength + this.partFill
    }
  }

  /**
   * Decode every complete frame in `chunk` (plus what was buffered before).
   * @throws BlockrepError ERR_FRAME_TOO_LARGE past a limit, ERR_FRAME_INVALID
   * for a zero-length header, bad msgpack, a header failing validation or a
   * payload length its message does not allow.
   */
  push(chunk: Buffer): Frame[] {
    const out: Frame[] = []
    this.pushInto(chunk, out)
    return out
  }

  /**
   * Like `push`, appending to `out`. When it throws, `out` still holds the
   * frames that preceded the bad one in this chunk (the transport delivers
   * them before it reports the error).
   */
  pushInto(chunk: Buffer, out: Frame[]): void {
    if (this.failed) throw this.failed
    try {
      this.run(chunk, out)
    } catch (err) {
      this.failed =
        err instanceof BlockrepError
          ? err
          : new BlockrepError(ErrorCode.FRAME_INVALID, `frame decoding failed: ${(err as Error).message}`, { cause: err })
      this.part = null
      throw this.failed
    }
  }

  private run(chunk: Buffer, out: Frame[]): void {
    let pos = 0
    const end = chunk.length
    while (pos < end || (this.state === State.Payload && this.payloadLength === 0)) {
      switch (this.state) {
        case State.Prefix: {
          if (this.prefixFill === 0 && end - pos >= PREFIX_BYTES) {
            this.headerLength = chunk.readUInt32BE(pos)
            this.payloadLength = chunk.readUInt32BE(pos + 4)
            pos += PREFIX_BYTES
          } else {
            const n = Math.min(PREFIX_BYTES - this.prefixFill, end - pos)
            chunk.copy(this.prefix, this.prefixFill, pos, pos + n)
            this.prefixFill += n
            pos += n
            if (this.prefixFill < PREFIX_BYTES) return
            this.prefixFill = 0
            this.headerLength = this.prefix.readUInt32BE(0)
            this.payloadLength = this.prefix.readUInt32BE(4)
          }
          this.checkPrefix()
          this.state = State.Header
          break
        }
        case State.Header: {
          const header = this.take(chunk, pos, this.headerLength)
          if (!header) return
          pos = header.next
          this.msg = decodeHeader(header.buf)
          validatePayloadLength(this.msg, this.payloadLength)
          this.state = State.Payload
          break
        }
        case State.Payload: {
          let payload: Buffer
          if (this.payloadLength === 0) {
            payload = EMPTY
          } else {
            const got = this.take(chunk, pos, this.payloadLength)
            if (!got) return
            pos = got.next
            payload = got.buf
          }
          out.push({ msg: this.msg!, payload })
          this.msg = null
          this.state = State.Prefix
          if (pos >= end) return
          break
        }
      }
    }
  }

  /**
   * Take `length` bytes starting at chunk[pos], continuing a part already begun.
   * Returns the whole part once complete (a subarray when it lies in this
   * chunk), or null after copying all the rest of this chunk.
   */
  private take(chunk: Buffer, pos: number, length: number): { buf: Buffer; next: number } | null {
    const avail = chunk.length - pos
    if (this.part === null) {
      if (avail >= length) return { buf: chunk.subarray(pos, pos + length), next: pos + length }
      this.part = Buffer.allocUnsafe(length)
      this.partFill = 0
    }
    const n = Math.min(length - this.partFill, avail)
    chunk.copy(this.part, this.partFill, pos, pos + n)
    this.partFill += n
    if (this.partFill < length) return null
    const buf = this.part
    this.part = null
    this.partFill = 0
    return { buf, next: pos + n }
  }

  private checkPrefix(): void {
    const { headerLength, payloadLength } = this
    if (headerLength === 0) {
      throw new BlockrepError(ErrorCode.FRAME_INVALID, 'frame header length is zero', {
        context: { type: '?', field: 'headerLength', headerLength, payloadLength },
      })
    }
    if (headerLength > this.limits.maxHeader) {
      throw new BlockrepError(ErrorCode.FRAME_TOO_LARGE, `frame header of ${headerLength} bytes exceeds the ${this.limits.maxHeader}-byte limit`, {
        context: { field: 'headerLength', headerLength, limit: this.limits.maxHeader },
      })
    }
    if (payloadLength > this.limits.maxPayload) {
      throw new BlockrepError(ErrorCode.FRAME_TOO_LARGE, `frame payload of ${payloadLength} bytes exceeds the ${this.limits.maxPayload}-byte limit`, {
        context: { field: 'payloadLength', payloadLength, limit: this.limits.maxPayload },
      })
    }
  }
}
