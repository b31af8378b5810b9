import t from 'tap'
import fc from 'fast-check'
import { isDeepStrictEqual } from 'node:util'
import { FrameDecoder, encodeFrameBuffer, encodeRuns, validateMessage } from '../src/wire/index.js'
import { BlockrepError } from '../src/util/errors.js'
import type { Frame, Message } from '../src/wire/index.js'
import { NbdDecoder, encodeOption, encodeRequest } from '../src/nbd/codec.js'
import type { Frame as NbdFrame } from '../src/nbd/codec.js'
import { Cmd, Option } from '../src/nbd/constants.js'
import { crc32c } from '../src/util/crc32c.js'
import { property } from './helpers/property.js'

/**
 * The push decoders must yield the same frames however the byte stream is
 * cut into chunks: every split of a valid stream (random cut points, single
 * bytes, empty chunks) decodes to exactly the messages that were encoded.
 */

const uint = fc.nat({ max: 2 ** 40 })
const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a))

const wireMessage: fc.Arbitrary<[Message, Buffer?]> = fc.oneof(
  bytes(3000).chain((p) =>
    fc.record({ seq: uint, epoch: uint, offset: uint }).map(({ seq, epoch, offset }): [Message, Buffer] => [
      { type: 'WRITE', seq, epoch, offset, length: p.length, zero: false, crc: crc32c(p) },
      p,
    ]),
  ),
  fc.record({ seq: uint, epoch: uint, offset: uint, length: fc.nat({ max: 1 << 30 }) }).map(({ seq, epoch, offset, length }): [Message] => [
    { type: 'WRITE', seq, epoch, offset, length, zero: true, crc: 0 },
  ]),
  uint.map((seq): [Message] => [{ type: 'ACK', seq }]),
  uint.map((t): [Message] => [{ type: 'PING', t }]),
  fc.constant<[Message]>([{ type: 'AUTH_OK' }]),
  fc.record({ round: fc.nat({ max: 1000 }), applied: uint }).map(({ round, applied }): [Message] => [{ type: 'BLOCKS_ACK', round, applied }]),
  fc.tuple(fc.nat({ max: 1000 }), fc.integer({ min: 1, max: 8 }), fc.nat({ max: 100000 })).map(([round, count, block]): [Message, Buffer] => {
    const p = Buffer.alloc(count * 16, round & 0xff)
    return [{ type: 'BLOCKS', round, runs: encodeRuns([[block, count]]), crc: crc32c(p) }, p]
  }),
  fc.string({ maxLength: 200 }).map((reason): [Message] => [{ type: 'MODE_REFUSE', reason }]),
)

/** Cut points: random chunk lengths (0 included, so empty pushes happen), or one byte at a time. */
const splits = fc.oneof(fc.array(fc.nat({ max: 700 }), { maxLength: 60 }), fc.constant(null))

function chunks(all: Buffer, lens: number[] | null): Buffer[] {
  if (lens === null) return [...all].map((b) => Buffer.from([b]))
  const out: Buffer[] = []
  let pos = 0
  for (const n of lens) {
    if (pos >= all.length) break
    out.push(all.subarray(pos, pos + n))
    pos += n
  }
  out.push(all.subarray(pos))
  return out
}

t.test('frame decoder - any split of a valid stream yields exactly the encoded frames', async (t) => {
  property(t, 'frame decoder splits', fc.property(fc.array(wireMessage, { minLength: 1, maxLength: 12 }), splits, (msgs, lens) => {
    const all = Buffer.concat(msgs.map(([m, p]) => encodeFrameBuffer(m, p)))
    const want: Frame[] = msgs.map(([msg, p]) => ({ msg, payload: p ?? Buffer.alloc(0) }))
    const d = new FrameDecoder()
    const got: Frame[] = []
    for (const c of chunks(all, lens)) got.push(...d.push(c))
    if (got.length !== want.length) throw new Error(`${got.length} frames decoded, ${want.length} encoded`)
    got.forEach((f, i) => {
      if (!isDeepStrictEqual(f.msg, want[i].msg)) throw new Error(`frame ${i}: ${JSON.stringify(f.msg)} != ${JSON.stringify(want[i].msg)}`)
      if (!Buffer.from(f.payload).equals(want[i].payload)) throw new Error(`frame ${i}: payload differs`)
    })
    if (d.buffered !== 0) throw new Error(`${d.buffered} bytes left buffered after whole frames`)
  }), 200)
})

// the NBD client → server stream: flags, options up to GO, then transmission requests
const nbdOption = fc.record({ option: fc.constantFrom(Option.LIST, Option.INFO, 0x99, Option.STRUCTURED_REPLY), data: bytes(300) })
const nbdRequest = fc.oneof(
  fc.record({ offset: fc.nat({ max: 2 ** 40 }), data: bytes(5000) }).map(({ offset, data }) => ({ command: Cmd.WRITE as number, offset, length: data.length, data })),
  fc.record({ command: fc.constantFrom(Cmd.READ, Cmd.FLUSH, Cmd.TRIM, Cmd.WRITE_ZEROES, Cmd.DISC), offset: fc.nat({ max: 2 ** 40 }), length: fc.nat({ max: 2 ** 31 }) }).map((r) => ({ ...r, command: r.command as number, data: undefined as Buffer | undefined })),
)

t.test('nbd decoder - any split of a valid negotiation and transmission stream yields the same frames', async (t) => {
  property(t, 'nbd decoder splits', fc.property(fc.nat({ max: 3 }), fc.array(nbdOption, { maxLength: 6 }), bytes(40), fc.array(nbdRequest, { maxLength: 10 }), splits, (flags, options, goData, requests, lens) => {
    const parts: Buffer[] = [Buffer.from([0, 0, 0, flags])]
    for (const o of options) parts.push(encodeOption(o.option, o.data))
    parts.push(encodeOption(Option.GO, goData))
    requests.forEach((r, i) => {
      parts.push(encodeRequest({ command: r.command, cookie: BigInt(i + 1), offset: r.offset, length: r.length, flags: i & 1 }))
      if (r.data) parts.push(r.data)
    })
    const d = new NbdDecoder({ maxPayload: 1 << 20 })
    const got: NbdFrame[] = []
    for (const c of chunks(Buffer.concat(parts), lens)) {
      d.push(c)
      for (let f = d.next(); f !== undefined; f = d.next()) {
        got.push(f)
        // the session enters transmission after a successful GO
        if (f.type === 'option' && f.option === Option.GO) d.enterTransmission()
      }
    }
    const want = [
      { type: 'clientFlags', flags },
      ...options.map((o) => ({ type: 'option', option: o.option, data: o.data })),
      { type: 'option', option: Option.GO, data: goData },
      ...requests.map((r, i) => {
        const cookie = Buffer.alloc(8)
        cookie.writeBigUInt64BE(BigInt(i + 1))
        return { type: 'request', flags: i & 1, command: r.command, cookie, offset: r.offset, length: r.length, ...(r.data ? { data: r.data } : {}) }
      }),
    ]
    if (got.length !== want.length) throw new Error(`${got.length} frames decoded, ${want.length} encoded`)
    got.forEach((f, i) => {
      const norm = JSON.parse(JSON.stringify(f))
      if (!isDeepStrictEqual(norm, JSON.parse(JSON.stringify(want[i])))) throw new Error(`frame ${i}: ${JSON.stringify(f).slice(0, 200)} != ${JSON.stringify(want[i]).slice(0, 200)}`)
    })
    if (d.bufferedBytes !== 0) throw new Error(`${d.bufferedBytes} bytes left buffered`)
  }), 200)
})

t.test('frame decoder fuzz - mutated valid streams end in a typed error or frames that validate, never a bogus message', async (t) => {
  let errors = 0
  let frames = 0
  property(t, 'frame decoder mutations', fc.property(fc.array(wireMessage, { minLength: 1, maxLength: 6 }), fc.array(fc.record({ at: fc.nat(), x: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 4 }), splits, (msgs, flips, lens) => {
    const all = Buffer.from(Buffer.concat(msgs.map(([m, p]) => encodeFrameBuffer(m, p))))
    for (const f of flips) all[f.at % all.length] ^= f.x
    const d = new FrameDecoder({ maxHeader: 1 << 16, maxPayload: 1 << 16 })
    const got: Frame[] = []
    try {
      for (const c of chunks(all, lens)) got.push(...d.push(c))
    } catch (err) {
      if (!(err instanceof BlockrepError) || !['ERR_FRAME_INVALID', 'ERR_FRAME_TOO_LARGE'].includes(err.code)) throw new Error(`untyped decoder error ${String(err)}`)
      errors++
    }
    for (const f of got) {
      frames++
      // a bogus message that fails validation is a decoder bug, not an error
      validateMessage(f.msg)
      if (f.msg.type === 'WRITE' && !f.msg.zero && f.payload.length !== f.msg.length) throw new Error('WRITE payload length differs from its header')
    }
  }), 500)
  t.ok(errors > 0 && frames > 0, `${errors} streams refused with a typed error, ${frames} frames decoded and valid`)
})
