/**
 * The portable Roaring serialization (RoaringFormatSpec; what CRoaring, Java
 * and Go write), little endian throughout:
 *
 *   cookie       u32  12346 (no run containers), then u32 container count
 *             or u32  12347 | (count - 1) << 16, then ceil(count / 8) bytes:
 *                     bit k set = container k is a run container
 *   descriptive  count x (u16 key, u16 cardinality - 1), keys ascending
 *   offsets      count x u32 byte offset of each container from the start;
 *                present with cookie 12346, or with 12347 when count >= 4
 *   containers   run:    u16 nruns, nruns x (u16 start, u16 length - 1)
 *                array:  cardinality <= 4096: cardinality x u16, ascending
 *                bitset: cardinality > 4096: 1024 x u64 (bit j = value j)
 *
 * The reader is strict: anything CRoaring's own validator would refuse
 * (unsorted values, overlapping or touching runs, a cardinality that does
 * not match the payload, offsets that do not match the layout, trailing
 * bytes) is ERR_BITMAP_FORMAT, so a damaged buffer never becomes a
 * silently different set.
 */
import { BlockrepError } from '../src/util/errors.js'
import { cSerializedBytes } from './roaring-containers.js'
import { ARRAY_MAX, ArrayContainer, BitsetContainer, Kind, RunContainer, popcount32 } from './roaring-kinds.js'
import type { Container } from './roaring-kinds.js'

export const SERIAL_COOKIE_NO_RUNCONTAINER = 12346
export const SERIAL_COOKIE = 12347
export const NO_OFFSET_THRESHOLD = 4
const MAX_CONTAINERS = 65536

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1

function bad(reason: string, context: Record<string, unknown>): BlockrepError {
  return new BlockrepError('ERR_BITMAP_FORMAT', `roaring bitmap: ${reason}`, { context: { reason, ...context } })
}

/** A fresh (owned, aligned) Uint16Array of n little-endian u16 at buf[pos]. */
function u16s(buf: Buffer, pos: number, n: number): Uint16Array {
  const out = new Uint16Array(n)
  if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(buf.subarray(pos, pos + 2 * n))
  else for (let i = 0; i < n; i++) out[i] = buf.readUInt16LE(pos + 2 * i)
  return out
}

function u32s(buf: Buffer, pos: number, n: number): Uint32Array {
  const out = new Uint32Array(n)
  if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(buf.subarray(pos, pos + 4 * n))
  else for (let i = 0; i < n; i++) out[i] = buf.readUInt32LE(pos + 4 * i)
  return out
}

export interface ParsedBitmap {
  keys: number[]
  containers: Container[]
  size: number
}

/**
 * Reads and fully validates a portable Roaring buffer. With `build` false
 * only validates (for handing the buffer to CRoaring, which trusts it).
 */
export function parsePortable(input: Uint8Array, build = true): ParsedBitmap {
  const u8: unknown = input
  if (!(u8 instanceof Uint8Array)) throw bad('not a buffer', { type: typeof u8 })
  const buf = Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength)
  const len = buf.length
  const need = (pos: number, n: number, what: string, extra: Record<string, unknown> = {}): void => {
    if (pos + n > len) throw bad(`truncated ${what}`, { offset: pos, needed: n, byteLength: len, ...extra })
  }
  need(0, 4, 'cookie')
  const cookie = buf.readUInt32LE(0)
  let pos = 4
  let count: number
  let runFlags = -1
  if ((cookie & 0xffff) === SERIAL_COOKIE) {
    count = (cookie >>> 16) + 1
    runFlags = pos
    need(pos, (count + 7) >>> 3, 'run-container bitset', { containers: count })
    pos += (count + 7) >>> 3
  } else if (cookie === SERIAL_COOKIE_NO_RUNCONTAINER) {
    need(pos, 4, 'container count')
    count = buf.readUInt32LE(pos)
    pos += 4
    if (count > MAX_CONTAINERS) throw bad('too many containers', { containers: count })
  } else {
    throw bad('unknown cookie', { cookie, byteLength: len })
  }
  const header = pos
  need(pos, 4 * count, 'descriptive header', { containers: count })
  pos += 4 * count
  let offsets = -1
  if (runFlags < 0 || count >= NO_OFFSET_THRESHOLD) {
    offsets = pos
    need(pos, 4 * count, 'offset header', { containers: count })
    pos += 4 * count
  }

  const keys: number[] = build ? new Array<number>(count) : []
  const containers: Container[] = build ? new Array<Container>(count) : []
  let size = 0
  let prevKey = -1
  for (let k = 0; k < count; k++) {
    const key = buf.readUInt16LE(header + 4 * k)
    const card = buf.readUInt16LE(header + 4 * k + 2) + 1
    const ctx = { container: k, key, offset: pos, byteLength: len }
    if (key <= prevKey) throw bad('keys not strictly ascending', ctx)
    prevKey = key
    if (offsets >= 0 && buf.readUInt32LE(offsets + 4 * k) !== pos) {
      throw bad('container offset does not match layout', { ...ctx, stored: buf.readUInt32LE(offsets + 4 * k) })
    }
    const isRun = runFlags >= 0 && (buf[runFlags + (k >>> 3)] & (1 << (k & 7))) !== 0
    let c: Container | null = null
    if (isRun) {
      need(pos, 2, 'run count', ctx)
      const n = buf.readUInt16LE(pos)
      need(pos + 2, 4 * n, 'runs', { ...ctx, runs: n })
      const runs = u16s(buf, pos + 2, 2 * n)
      let total = 0
      let prevEnd = -2
      for (let i = 0; i < n; i++) {
        const s = runs[2 * i]
        const e = s + runs[2 * i + 1]
        if (e > 65535) throw bad('run past the end of its container', { ...ctx, run: i })
        if (s <= prevEnd + 1) throw bad('runs overlap, touch or are unsorted', { ...ctx, run: i })
        prevEnd = e
        total += e - s + 1
      }
      if (n === 0 || total !== card) throw bad('run container cardinality mismatch', { ...ctx, header: card, actual: total })
      if (build) c = new RunContainer(card, n, runs)
      pos += 2 + 4 * n
    } else if (card <= ARRAY_MAX) {
      need(pos, 2 * card, 'array container', ctx)
      const vals = u16s(buf, pos, card)
      for (let i = 1; i < card; i++) {
        if (vals[i] <= vals[i - 1]) throw bad('array values not strictly ascending', { ...ctx, index: i })
      }
      if (build) c = new ArrayContainer(card, vals)
      pos += 2 * card
    } else {
      need(pos, 8192, 'bitset container', ctx)
      const words = u32s(buf, pos, 2048)
      let total = 0
      for (let i = 0; i < 2048; i++) if (words[i] !== 0) total += popcount32(words[i])
      if (total !== card) throw bad('bitset cardinality mismatch', { ...ctx, header: card, actual: total })
      if (build) c = new BitsetContainer(card, words)
      pos += 8192
    }
    if (build) {
      keys[k] = key
      containers[k] = c as Container
    }
    size += card
  }
  if (pos !== len) throw bad('trailing bytes after the last container', { expected: pos, byteLength: len })
  return { keys, containers, size }
}

/** Writes containers (ascending keys, none empty) in the portable format. */
export function serializePortable(keys: readonly number[], containers: readonly Container[]): Buffer {
  const count = keys.length
  let hasRun = false
  let payload = 0
  for (const c of containers) {
    if (c.kind === Kind.RUN) hasRun = true
    payload += cSerializedBytes(c)
  }
  const flagBytes = hasRun ? (count + 7) >>> 3 : 0
  const withOffsets = !hasRun || count >= NO_OFFSET_THRESHOLD
  const headerBytes = (hasRun ? 4 : 8) + flagBytes + 4 * count + (withOffsets ? 4 * count : 0)
  const buf = Buffer.alloc(headerBytes + payload)
  let pos: number
  if (hasRun) {
    buf.writeUInt32LE((SERIAL_COOKIE | ((count - 1) << 16)) >>> 0, 0)
    for (let k = 0; k < count; k++) if (containers[k].kind === Kind.RUN) buf[4 + (k >>> 3)] |= 1 << (k & 7)
    pos = 4 + flagBytes
  } else {
    buf.writeUInt32LE(SERIAL_COOKIE_NO_RUNCONTAINER, 0)
    buf.writeUInt32LE(count, 4)
    pos = 8
  }
  for (let k = 0; k < count; k++) {
    buf.writeUInt16LE(keys[k], pos)
    buf.writeUInt16LE(containers[k].card - 1, pos + 2)
    pos += 4
  }
  let at = headerBytes
  if (withOffsets) {
    for (let k = 0; k < count; k++) {
      buf.writeUInt32LE(at, pos)
      pos += 4
      at += cSerializedBytes(containers[k])
    }
  }
  for (const c of containers) pos = writeContainer(buf, pos, c)
  return buf
}

function writeContainer(buf: Buffer, pos: number, c: Container): number {
  if (c.kind === Kind.RUN) {
    buf.writeUInt16LE(c.n, pos)
    return writeU16s(buf, pos + 2, c.runs, 2 * c.n)
  }
  if (c.kind === Kind.ARRAY) return writeU16s(buf, pos, c.vals, c.card)
  if (LITTLE_ENDIAN) {
    buf.set(new Uint8Array(c.words.buffer, c.words.byteOffset, 8192), pos)
  } else {
    for (let i = 0; i < 2048; i++) buf.writeUInt32LE(c.words[i], pos + 4 * i)
  }
  return pos + 8192
}

function writeU16s(buf: Buffer, pos: number, src: Uint16Array, n: number): number {
  if (LITTLE_ENDIAN) buf.set(new Uint8Array(src.buffer, src.byteOffset, 2 * n), pos)
  else for (let i = 0; i < n; i++) buf.writeUInt16LE(src[i], pos + 2 * i)
  return pos + 2 * n
}
