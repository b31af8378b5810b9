import { crc32c } from '../util/crc32c.js'
import { BlockrepError, ErrorCode } from '../util/errors.js'
import { MAX_BLOCK_RUNS, MessageType, decodeRuns } from './messages.js'
import type { Frame, Message, WireMeta } from './messages.js'

/** Longest id (volumeId, nodeId) and code string accepted on the wire, in UTF-16 units. */
export const MAX_ID_LENGTH = 128
/** Longest free-text field (reason, message). */
export const MAX_TEXT_LENGTH = 4096
/** Most epochs a history may carry. */
export const MAX_EPOCHS = 65536
/** HELLO nonce and AUTH proof length. */
export const NONCE_BYTES = 32
/** Longest single digest in a DIGEST_RESP payload. */
export const MAX_DIGEST_BYTES = 64

type Obj = Record<string, unknown>

function invalid(type: string, field: string, why: string, extra: Obj = {}): BlockrepError {
  return new BlockrepError(ErrorCode.FRAME_INVALID, `${type}: field '${field}' ${why}`, {
    context: { type, field, ...extra },
  })
}

/** A field reader: checks one value and returns it in its normalized form. */
type Check = (v: unknown, type: string, field: string) => unknown

const uint: Check = (v, type, field) => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw invalid(type, field, 'must be a non-negative safe integer', { value: describe(v) })
  }
  return v
}
const positive: Check = (v, type, field) => {
  const n = uint(v, type, field) as number
  if (n === 0) throw invalid(type, field, 'must be positive')
  return n
}
const u32: Check = (v, type, field) => {
  const n = uint(v, type, field) as number
  if (n > 0xffffffff) throw invalid(type, field, 'must fit in 32 bits', { value: n })
  return n
}
const bool: Check = (v, type, field) => {
  if (typeof v !== 'boolean') throw invalid(type, field, 'must be a boolean', { value: describe(v) })
  return v
}
const str =
  (max: number, min = 0): Check =>
  (v, type, field) => {
    if (typeof v !== 'string') throw invalid(type, field, 'must be a string', { value: describe(v) })
    if (v.length < min || v.length > max) throw invalid(type, field, `length must be in [${min}, ${max}]`, { length: v.length })
    return v
  }
/** An identifier: 1..MAX_ID_LENGTH characters, no NUL (node ids are NUL-delimited in the auth proof). */
const id: Check = (v, type, field) => {
  const s = str(MAX_ID_LENGTH, 1)(v, type, field) as string
  if (s.includes('\0')) throw invalid(type, field, 'must not contain NUL')
  return s
}
/** a standby initialised without a volume id sends "" until it adopts the primary's */
const volumeIdField: Check = (v, type, field) => (v === '' ? v : id(v, type, field))
const oneOf =
  <T extends string>(...values: T[]): Check =>
  (v, type, field) => {
    if (typeof v !== 'string' || !(values as string[]).includes(v)) {
      throw invalid(type, field, `must be one of ${values.join(', ')}`, { value: describe(v) })
    }
    return v
  }
const bin =
  (exact?: number): Check =>
  (v, type, field) => {
    if (!(v instanceof Uint8Array)) throw invalid(type, field, 'must be binary', { value: describe(v) })
    if (exact !== undefined && v.byteLength !== exact) throw invalid(type, field, `must be ${exact} bytes`, { length: v.byteLength })
    return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)
  }
const orNull =
  (inner: Check): Check =>
  (v, type, field) =>
    v === null ? null : inner(v, type, field)

type Schema = Record<string, Check>
/** One check per field of `M` (but `type`): the compiler flags a schema that drifts from messages.ts. */
type SchemaOf<M> = { [K in Exclude<keyof M, 'type'>]-?: Check }
type MessageOf<T extends MessageType> = Extract<Message, { type: T }>

function object(schema: Schema, v: unknown, type: string, prefix: string): Obj {
  if (!isPlainObject(v)) throw invalid(type, prefix || 'header', 'must be a map', { value: describe(v) })
  const out: Obj = {}
  for (const key of Object.keys(schema)) {
    const field = prefix ? `${prefix}.${key}` : key
    if (!Object.hasOwn(v, key)) throw invalid(type, field, 'is missing')
    out[key] = schema[key]!(v[key], type, field)
  }
  return out
}

const epochSchema: SchemaOf<WireMeta['epochs'][number]> = { epoch: uint, nodeId: id, startSeq: uint }
const epochs: Check = (v, type, field) => {
  if (!Array.isArray(v)) throw invalid(type, field, 'must be an array', { value: describe(v) })
  if (v.length > MAX_EPOCHS) throw invalid(type, field, `must have at most ${MAX_EPOCHS} entries`, { length: v.length })
  return v.map((e, i) => object(epochSchema, e, type, `${field}[${i}]`))
}
const role = oneOf('primary', 'standby')
const metaSchema: SchemaOf<WireMeta> = {
  volumeId: volumeIdField,
  nodeId: id,
  blockSize: positive,
  size: uint,
  role,
  epochs,
  headSeq: uint,
  journalTail: uint,
  consistent: bool,
  syncedOnce: bool,
  resyncRemaining: orNull(bin()),
  cleanShutdown: bool,
  metaCorrupt: bool,
}
const meta: Check = (v, type, field) => object(metaSchema, v, type, field)

/**
 * Field schema of every message type, in wire order (the encoder writes the
 * fields in this order, so golden vectors do not depend on how a caller built
 * its object). `type` is implicit and always first.
 */
const schemas: { [T in MessageType]: SchemaOf<MessageOf<T>> } = {
  HELLO: { version: uint, volumeId: volumeIdField, nodeId: id, role, blockSize: positive, size: uint, nonce: bin(NONCE_BYTES) },
  AUTH: { proof: bin(NONCE_BYTES) },
  AUTH_OK: {},
  ERROR: { code: str(MAX_ID_LENGTH, 1), message: str(MAX_TEXT_LENGTH) },
  META: { meta },
  DIVERGENCE_QUERY: { branchSeq: uint },
  DIVERGENCE_BLOCKS: { known: bool, bitmap: orNull(bin()), fromSeq: uint, toSeq: uint },
  MODE: {
    mode: oneOf('NONE', 'HEAD_DELTA', 'BITMAP', 'FULL'),
    reason: str(MAX_TEXT_LENGTH),
    blocks: uint,
    bytes: uint,
    epochs,
    branchSeq: orNull(uint),
    checksum: bool,
  },
  MODE_ACCEPT: {},
  MODE_REFUSE: { reason: str(MAX_TEXT_LENGTH) },
  WRITE: { seq: uint, epoch: uint, offset: uint, length: uint, zero: bool, crc: u32 },
  ACK: { seq: uint },
  ROUND_BEGIN: { round: uint, mode: oneOf('BITMAP', 'FULL'), blocks: uint, frozenSeq: uint, bitmap: orNull(bin()) },
  BLOCKS: { round: uint, runs: bin(), crc: u32 },
  BLOCKS_ACK: { round: uint, applied: uint },
  ROUND_END: { round: uint },
  DIGEST_REQ: { id: uint, block: uint, count: uint, rangeBlocks: positive },
  DIGEST_RESP: { id: uint, block: uint, count: uint, rangeBlocks: positive, crc: u32 },
  SYNC_DONE: { headSeq: uint },
  FLUSH: { id: uint },
  FLUSH_ACK: { id: uint },
  PING: { t: uint },
  PONG: { t: uint },
  FAILSAFE: { t: uint, epoch: uint, windowMs: uint },
  FAILSAFE_OK: { t: uint, epoch: uint, promised: bool },
}

/** Message types that carry a payload; every other type must have an empty one. */
export const PAYLOAD_TYPES: ReadonlySet<MessageType> = new Set<MessageType>(['WRITE', 'BLOCKS', 'DIGEST_RESP'])

/**
 * Check that `obj` is a well-formed message and return a fresh object holding
 * exactly the fields of its type, in wire order (unknown fields are dropped,
 * binary fields become Buffers without copying).
 * @throws BlockrepError ERR_FRAME_INVALID naming the type and the field.
 */
export function validateMessage(obj: unknown): Message {
  if (!isPlainObject(obj)) throw invalid('?', 'header', 'must be a map', { value: describe(obj) })
  const type = obj.type
  if (typeof type !== 'string' || !Object.hasOwn(schemas, type)) {
    throw invalid(typeof type === 'string' ? type.slice(0, MAX_ID_LENGTH) : '?', 'type', 'is not a known message type', {
      value: describe(type),
    })
  }
  const out = object(schemas[type as MessageType] as Schema, obj, type, '')
  return { type, ...out } as unknown as Message
}

/**
 * The payload rules the codec can check without knowing the volume: WRITE
 * carries exactly `length` bytes (none when `zero`), BLOCKS a positive multiple
 * of `count`, DIGEST_RESP one digest (1..64 bytes) per range, everything else
 * nothing. Called as soon as a header is decoded, before its payload arrives.
 * @throws BlockrepError ERR_FRAME_INVALID
 */
export function validatePayloadLength(msg: Message, payloadLength: number): void {
  switch (msg.type) {
    case 'WRITE': {
      const want = msg.zero ? 0 : msg.length
      if (payloadLength !== want) {
        throw invalid('WRITE', 'length', msg.zero ? 'must come with no payload when zero=true' : 'must equal the payload length', {
          length: msg.length,
          zero: msg.zero,
          payloadLength,
        })
      }
      return
    }
    case 'BLOCKS': {
      const runs = msg.runs.byteLength / 8
      if (!Number.isInteger(runs) || runs < 1 || runs > MAX_BLOCK_RUNS) {
        throw invalid('BLOCKS', 'runs', `must hold 1..${MAX_BLOCK_RUNS} runs of 8 bytes`, { runsBytes: msg.runs.byteLength })
      }
      if (payloadLength === 0) throw invalid('BLOCKS', 'payload', 'must not be empty', { payloadLength })
      return
    }
    case 'DIGEST_RESP': {
      const ranges = Math.ceil(msg.count / msg.rangeBlocks)
      const ok =
        ranges === 0 ? payloadLength === 0 : payloadLength % ranges === 0 && payloadLength / ranges >= 1 && payloadLength / ranges <= MAX_DIGEST_BYTES
      if (!ok) {
        throw invalid('DIGEST_RESP', 'count', `must match one digest of 1..${MAX_DIGEST_BYTES} bytes per range`, {
          count: msg.count,
          rangeBlocks: msg.rangeBlocks,
          payloadLength,
        })
      }
      return
    }
    default:
      if (payloadLength !== 0) throw invalid(msg.type, 'payload', 'must be empty for this message type', { payloadLength })
  }
}

/**
 * The checks that need the volume geometry, run by the session before it
 * applies a frame: ranges lie inside the volume, BLOCKS carries exactly
 * count*blockSize bytes, and the payload matches its crc32c.
 * @throws BlockrepError ERR_FRAME_INVALID (range, size) or ERR_CRC_MISMATCH
 */
export function validateFramePayload(frame: Frame, vol: { blockSize: number; size: number }): void {
  const { msg, payload } = frame
  const totalBlocks = Math.ceil(vol.size / vol.blockSize)
  const blockRange = (type: string, block: number, count: number): void => {
    if (block + count > totalBlocks) {
      throw invalid(type, block >= totalBlocks ? 'block' : 'count', `range [${block}, ${block + count}) is past the volume's ${totalBlocks} blocks`, {
        block,
        count,
        totalBlocks,
      })
    }
  }
  const crc = (type: string, want: number): void => {
    const got = crc32c(payload)
    if (got !== want) {
      throw new BlockrepError(ErrorCode.CRC_MISMATCH, `${type}: field 'crc' does not match the payload`, {
        context: { type, field: 'crc', expected: want, actual: got, payloadLength: payload.length },
      })
    }
  }
  validatePayloadLength(msg, payload.length)
  switch (msg.type) {
    case 'WRITE':
      if (msg.offset + msg.length > vol.size) {
        throw invalid('WRITE', msg.offset >= vol.size ? 'offset' : 'length', `range [${msg.offset}, ${msg.offset + msg.length}) is past the volume size ${vol.size}`, {
          offset: msg.offset,
          length: msg.length,
          size: vol.size,
        })
      }
      if (!msg.zero) crc('WRITE', msg.crc)
      return
    case 'BLOCKS': {
      let blocks = 0
      let next = 0
      for (const [block, count] of decodeRuns(msg.runs)) {
        if (count < 1 || block < next) {
          throw invalid('BLOCKS', 'runs', 'runs must be non-empty, ascending and disjoint', { block, count, previousEnd: next })
        }
        blockRange('BLOCKS', block, count)
        blocks += count
        next = block + count
      }
      if (payload.length !== blocks * vol.blockSize) {
        throw invalid('BLOCKS', 'runs', `payload must be the runs' ${blocks} blocks × blockSize = ${blocks * vol.blockSize} bytes`, {
          blocks,
          blockSize: vol.blockSize,
          payloadLength: payload.length,
        })
      }
      crc('BLOCKS', msg.crc)
      return
    }
    case 'DIGEST_REQ':
      blockRange('DIGEST_REQ', msg.block, msg.count)
      return
    case 'DIGEST_RESP':
      blockRange('DIGEST_RESP', msg.block, msg.count)
      crc('DIGEST_RESP', msg.crc)
      return
    default:
      return
  }
}

function isPlainObject(v: unknown): v is Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return false
  const proto = Object.getPrototypeOf(v) as unknown
  return proto === Object.prototype || proto === null
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  if (v instanceof Uint8Array) return `binary(${v.byteLength})`
  if (typeof v === 'string') return v.length > 40 ? `string(${v.length})` : JSON.stringify(v)
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object'
  return typeof v
}
