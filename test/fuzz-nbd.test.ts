import t from 'tap'
import fc from 'fast-check'
import fs from 'node:fs'
import net from 'node:net'
import { NbdServer } from '../src/nbd/index.js'
import { encodeInfoRequest, encodeOption, encodeRequest } from '../src/nbd/codec.js'
import { ClientFlag, Cmd, Option } from '../src/nbd/constants.js'
import { NbdClient } from '../src/client/nbd-client.js'
import { FileEngine, tempVolume } from './helpers/file-engine.js'
import { property } from './helpers/property.js'

/**
 * Fuzzing the NBD server (negotiation and transmission) over real TCP, on a
 * file engine: valid client streams, mutated (bytes flipped, cut, spliced,
 * repeated) and random. Every input must end with the server closing or
 * answering within a deadline (no hang), the server must keep serving a
 * well-behaved client afterwards (no crash), and the volume may change only
 * through writes the engine was asked for, each carrying bytes the client sent
 * at an offset inside the volume (never changed data).
 */
const SIZE = 256 * 1024
const DEADLINE_MS = 3000

/** A FileEngine that records the changes it makes. */
class RecordingEngine extends FileEngine {
  changes: { offset: number; data: Buffer | null; length: number }[] = []
  override async write(offset: number, data: Buffer, opts: { fua: boolean }): Promise<void> {
    await super.write(offset, data, opts)
    this.changes.push({ offset, data: Buffer.from(data), length: data.length })
  }
  override async writeZeroes(offset: number, length: number, opts: { fua: boolean }): Promise<void> {
    await super.writeZeroes(offset, length, opts)
    this.changes.push({ offset, data: null, length })
  }
}

const payload = fc.uint8Array({ minLength: 1, maxLength: 3000 }).map((a) => Buffer.from(a))
const request = fc.oneof(
  fc.tuple(fc.nat(SIZE - 1), payload).map(([off, data]) => Buffer.concat([encodeRequest({ command: Cmd.WRITE, cookie: 1n, offset: Math.min(off, SIZE - data.length), length: data.length }), data])),
  fc.tuple(fc.nat(SIZE), fc.nat(8192)).map(([off, len]) => encodeRequest({ command: Cmd.READ, cookie: 2n, offset: off, length: len })),
  fc.tuple(fc.nat(SIZE), fc.nat(8192)).map(([off, len]) => encodeRequest({ command: Cmd.WRITE_ZEROES, cookie: 3n, offset: off, length: len })),
  fc.tuple(fc.nat(SIZE), fc.nat(8192)).map(([off, len]) => encodeRequest({ command: Cmd.TRIM, cookie: 4n, offset: off, length: len })),
  fc.constant(encodeRequest({ command: Cmd.FLUSH, cookie: 5n, offset: 0, length: 0 })),
  fc.constant(encodeRequest({ command: Cmd.DISC, cookie: 6n, offset: 0, length: 0 })),
)
const option = fc.oneof(
  fc.constant(encodeOption(Option.LIST)),
  fc.constant(encodeOption(Option.INFO, encodeInfoRequest(''))),
  fc.constant(encodeOption(Option.STRUCTURED_REPLY)),
  fc.constant(encodeOption(Option.INFO, encodeInfoRequest('no-such-export'))),
  fc.uint8Array({ maxLength: 40 }).map((d) => encodeOption(0x1234, Buffer.from(d))),
)
const flags = Buffer.alloc(4)
flags.writeUInt32BE(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES)
const valid = fc.tuple(fc.array(option, { maxLength: 3 }), fc.array(request, { maxLength: 8 })).map(([opts, reqs]) =>
  Buffer.concat([flags, ...opts, encodeOption(Option.GO, encodeInfoRequest('')), ...reqs]),
)

type Mutation = { kind: 'flip'; at: number; x: number } | { kind: 'cut'; at: number } | { kind: 'splice'; at: number; bytes: Buffer } | { kind: 'repeat'; at: number; len: number }
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), x: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 32 }).map((a) => Buffer.from(a)) }),
  fc.record({ kind: fc.constant('repeat' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 64 }) }),
)

function mutate(input: Buffer, ms: Mutation[]): Buffer {
  let b = Buffer.from(input)
  for (const m of ms) {
    if (b.length === 0) break
    const at = m.at % b.length
    if (m.kind === 'flip') b[at] ^= m.x
    else if (m.kind === 'cut') b = b.subarray(0, at)
    else if (m.kind === 'splice') b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)])
    else b = Buffer.concat([b.subarray(0, at + m.len), b.subarray(at, at + m.len), b.subarray(at + m.len)])
  }
  return b
}

const input = fc.oneof(
  { weight: 1, arbitrary: valid },
  { weight: 6, arbitrary: fc.tuple(valid, fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([v, ms]) => mutate(v, ms)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.concat([flags, Buffer.from(a)])) },
)

/** Sends `bytes`, half-closes, and waits for the server to close; rejects on a hang. */
function exchange(port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    const timer = setTimeout(() => {
      s.destroy()
      reject(new Error(`the server neither closed nor finished within ${DEADLINE_MS} ms`))
    }, DEADLINE_MS)
    s.on('connect', () => s.end(bytes))
    s.on('data', () => {})
    s.on('error', () => {})
    s.on('close', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

t.test('nbd fuzz - mutated and random client streams: no crash, no hang, data changes only by requested writes', async (t) => {
  const vol = tempVolume(SIZE, 'blockrep-nbd-fuzz-')
  t.teardown(vol.cleanup)
  const seedData = Buffer.alloc(SIZE)
  for (let i = 0; i < SIZE; i += 4) seedData.writeUInt32BE(i, i)
  fs.writeFileSync(vol.file, seedData)
  const engine = new RecordingEngine(vol.file)
  const server = new NbdServer({ engine, handshakeTimeoutMs: 1000 })
  const { port } = await server.listen(0, '127.0.0.1')
  t.teardown(async () => {
    await server.close()
    engine.close()
  })
  const model = Buffer.from(seedData)
  let inputs = 0
  let wrote = 0
  await property(t, 'nbd server fuzz', fc.asyncProperty(input, async (bytes) => {
    inputs++
    engine.changes = []
    await exchange(port, bytes)
    if (engine.changes.length) wrote++
    for (const c of engine.changes) {
      if (c.offset < 0 || c.offset + c.length > SIZE) throw new Error(`engine asked to change [${c.offset}, +${c.length}) outside the volume`)
      if (c.data && bytes.indexOf(c.data) < 0) throw new Error(`engine wrote ${c.length} bytes the client never sent`)
      if (c.data) c.data.copy(model, c.offset)
      else model.fill(0, c.offset, c.offset + c.length)
    }
    const now = fs.readFileSync(vol.file)
    if (!now.equals(model)) throw new Error('the volume changed beyond the writes the engine was asked for')
  }), 150)
  t.ok(wrote > 10, `${wrote} of ${inputs} inputs reached the transmission phase and changed data`)
  // the server still serves a well-behaved client
  const c = await NbdClient.connect('127.0.0.1', port)
  t.same(await c.read(0, 4096), model.subarray(0, 4096), `after ${inputs} fuzzed connections a real client reads the expected data`)
  await c.close()
})
