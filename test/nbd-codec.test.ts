import t from 'tap'
import type { Test } from 'tap'
import net from 'node:net'
import {
  Cmd, CmdFlag, Errno, InfoType, NbdDecoder, NbdServer, NbdSession, Option, OptReply, encodeExportNameReply,
  encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeInfoRequest, encodeOption, encodeOptionReply,
  encodeRequest, encodeServerEntry, encodeSimpleReply, nbdErrno, parseInfoRequest, answerOption, transmissionFlags,
} from '../src/nbd/index.js'
import type { BlockEngine, Frame, RequestFrame, SessionOutput } from '../src/nbd/index.js'
import { BlockrepError } from '../src/util/errors.js'
import { FileEngine, tempVolume } from './helpers/file-engine.js'
import type { FileEngineOptions } from './helpers/file-engine.js'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const KiB = 1024
const MiB = 1024 * KiB

// ---------------------------------------------------------------- pure codec

t.test('nbd codec - golden server frames', async t => {
  t.same(encodeGreeting(3), hex('4e42444d41474943 49484156454f5054 0003'))
  t.same(encodeOptionReply(Option.LIST, OptReply.ACK), hex('0003e889045565a9 00000003 00000001 00000000'))
  t.same(encodeOptionReply(Option.GO, OptReply.ERR_UNSUP, Buffer.from('x')),
    hex('0003e889045565a9 00000007 80000001 00000001 78'))
  t.same(encodeServerEntry('vol0'), hex('00000004 766f6c30'), 'REP_SERVER data carries the u32 name length')
  t.same(encodeInfoExport(0x123456789, 0x16d), hex('0000 0000000123456789 016d'))
  t.same(encodeInfoBlockSize(1, 4096, 32 * MiB), hex('0003 00000001 00001000 02000000'))
  t.same(encodeExportNameReply(4096, 1, true), hex('0000000000001000 0001'))
  t.equal(encodeExportNameReply(4096, 1, false).length, 134, '124 zero bytes without NO_ZEROES')
  t.same(encodeSimpleReply(hex('0102030405060708'), Errno.EINVAL), hex('67446698 00000016 0102030405060708'))
})

t.test('nbd codec - golden client frames', async t => {
  t.same(encodeOption(Option.GO, encodeInfoRequest('', [InfoType.BLOCK_SIZE])),
    hex('49484156454f5054 00000007 00000008 00000000 0001 0003'))
  t.same(encodeRequest({ flags: CmdFlag.FUA, command: Cmd.WRITE, cookie: 0xaabbn, offset: 512, length: 4 }),
    hex('25609513 0001 0001 000000000000aabb 0000000000000200 00000004'))
})

t.test('nbd codec - info request parsing rejects inconsistent lengths', async t => {
  t.same(parseInfoRequest(encodeInfoRequest('vol0', [0, 3])), { name: 'vol0', infos: [0, 3] })
  t.same(parseInfoRequest(encodeInfoRequest('')), { name: '', infos: [] })
  t.equal(parseInfoRequest(hex('00000009 00')), undefined, 'name longer than the data')
  t.equal(parseInfoRequest(hex('00000000 0002 0003')), undefined, 'fewer infos than announced')
  t.equal(parseInfoRequest(hex('00000000 0000 00')), undefined, 'trailing bytes')
  t.equal(parseInfoRequest(hex('0000')), undefined, 'truncated')
})

function transcript(): Buffer {
  const payload = Buffer.alloc(1000, 0x5a)
  return Buffer.concat([
    hex('00000003'), // client flags
    encodeOption(Option.LIST),
    encodeOption(Option.GO, encodeInfoRequest('vol0', [InfoType.BLOCK_SIZE])),
    encodeRequest({ command: Cmd.WRITE, flags: CmdFlag.FUA, cookie: 1n, offset: 4096, length: payload.length }),
    payload,
    encodeRequest({ command: Cmd.READ, cookie: 2n, offset: 0, length: 512 }),
    encodeRequest({ command: Cmd.DISC, cookie: 3n, offset: 0, length: 0 }),
  ])
}

/** Feed `parts` and drain, switching to transmission after the GO option as a session would. */
function decodeAll(parts: Buffer[]): Frame[] {
  const d = new NbdDecoder()
  const frames: Frame[] = []
  for (const p of parts) {
    d.push(p)
    for (let f = d.next(); f !== undefined; f = d.next()) {
      frames.push(f)
      if (f.type === 'option' && f.option === Option.GO) d.enterTransmission()
    }
  }
  if (d.bufferedBytes !== 0) throw new Error(`${d.bufferedBytes} bytes left over`)
  return frames
}

t.test('nbd codec - a transcript split at every byte decodes the same', async t => {
  const all = transcript()
  const whole = decodeAll([all])
  t.equal(whole.length, 6)
  t.match(whole[0], { type: 'clientFlags', flags: 3 })
  t.match(whole[1], { type: 'option', option: Option.LIST })
  t.match(whole[2], { type: 'option', option: Option.GO })
  const w = whole[3] as RequestFrame
  t.match(w, { type: 'request', command: Cmd.WRITE, flags: CmdFlag.FUA, offset: 4096, length: 1000 })
  t.same(w.cookie, hex('0000000000000001'))
  t.ok(w.data?.equals(Buffer.alloc(1000, 0x5a)))
  t.match(whole[4], { command: Cmd.READ, length: 512, data: undefined })
  t.match(whole[5], { command: Cmd.DISC })
  let ok = true
  for (let i = 1; i < all.length; i++) {
    const got = decodeAll([all.subarray(0, i), all.subarray(i)])
    if (JSON.stringify(got) !== JSON.stringify(whole)) {
      ok = false
      t.fail(`split at ${i} differs`)
      break
    }
  }
  t.ok(ok, 'every two-way split')
  const bytes: Buffer[] = []
  for (let i = 0; i < all.length; i++) bytes.push(all.subarray(i, i + 1))
  t.equal(JSON.stringify(decodeAll(bytes)), JSON.stringify(whole), 'one byte at a time')
})

t.test('nbd codec - hard limits throw before the payload arrives', async t => {
  const d1 = new NbdDecoder()
  d1.push(hex('00000003'))
  d1.next()
  d1.push(encodeOption(Option.GO).subarray(0, 8))
  d1.push(hex('00000007 00010001')) // length 64 KiB + 1, no data sent
  t.throws(() => d1.next(), { code: 'ERR_NBD_PROTOCOL' }, 'option too long')

  const d2 = new NbdDecoder()
  d2.push(hex('00000003 0102030405060708 00000001 00000000'))
  d2.next()
  t.throws(() => d2.next(), { code: 'ERR_NBD_PROTOCOL' }, 'bad option magic')

  const d3 = new NbdDecoder()
  d3.enterTransmission()
  d3.push(encodeRequest({ command: Cmd.WRITE, cookie: 1n, offset: 0, length: 32 * MiB + 1 }))
  t.throws(() => d3.next(), { code: 'ERR_NBD_PROTOCOL' }, 'write past the max payload')

  const d4 = new NbdDecoder()
  d4.enterTransmission()
  d4.push(encodeRequest({ command: Cmd.READ, cookie: 1n, offset: 0, length: 32 * MiB + 1 }))
  t.match(d4.next(), { command: Cmd.READ }, 'an oversize READ is a frame (answered EINVAL), not a desync')

  const d5 = new NbdDecoder()
  d5.enterTransmission()
  const bad = encodeRequest({ command: Cmd.READ, cookie: 1n, offset: 0, length: 1 })
  bad.writeUInt32BE(0x25609514, 0)
  d5.push(bad)
  t.throws(() => d5.next(), { code: 'ERR_NBD_PROTOCOL' }, 'bad request magic')
})

t.test('nbd handshake - answerOption decides without I/O', async t => {
  const ctx = {
    export: { name: 'vol0', size: 8192, blockSize: 512, transmissionFlags: () => transmissionFlags(false, true) },
    fixedNewstyle: true,
    noZeroes: true,
    maxPayload: 32 * MiB,
  }
  const opt = (option: number, data: Buffer = Buffer.alloc(0)) => ({ type: 'option' as const, option, data })
  t.equal(transmissionFlags(false, true), 0x16d)
  t.equal(transmissionFlags(true, false), 0x6f)
  t.match(answerOption(opt(Option.EXPORT_NAME, Buffer.from('nosuch')), ctx), { next: 'disconnect' })
  const ex = answerOption(opt(Option.EXPORT_NAME, Buffer.from('vol0')), ctx)
  t.match(ex, { next: 'transmission', name: 'vol0' })
  t.same(ex.next === 'transmission' && ex.send[0], hex('0000000000002000 016d'))
  t.match(answerOption(opt(Option.GO, encodeInfoRequest('x')), ctx), { next: 'options' })
  t.match(answerOption(opt(Option.INFO, encodeInfoRequest('')), ctx), { next: 'options' })
  t.match(answerOption(opt(Option.GO, encodeInfoRequest('')), ctx), { next: 'transmission', name: '' })
  t.match(answerOption(opt(Option.ABORT), ctx), { next: 'close' })
  t.match(answerOption(opt(Option.STRUCTURED_REPLY), ctx), { next: 'options' })
  t.match(answerOption(opt(Option.STRUCTURED_REPLY), { ...ctx, fixedNewstyle: false }), { next: 'disconnect' })
})

t.test('nbd errno - one mapping', async t => {
  const e = (code: ConstructorParameters<typeof BlockrepError>[0]): number => nbdErrno(new BlockrepError(code, 'x'))
  t.equal(e('ERR_READ_ONLY'), Errno.EPERM)
  t.equal(e('ERR_NOT_PRIMARY'), Errno.EPERM)
  t.equal(e('ERR_OUT_OF_RANGE'), Errno.EINVAL)
  t.equal(e('ERR_NO_SPACE'), Errno.ENOSPC)
  t.equal(e('ERR_SHUTDOWN'), Errno.ESHUTDOWN)
  t.equal(e('ERR_JOURNAL_FULL'), Errno.EIO)
  t.equal(nbdErrno(new Error('plain')), Errno.EIO)
  t.equal(nbdErrno('string'), Errno.EIO)
})

// ---------------------------------------------------------------- raw sockets

/** A byte-exact client over a real socket. */
class RawClient {
  private buf = Buffer.alloc(0)
  private waiter: (() => void) | undefined
  ended = false
  readonly closed: Promise<void>

  constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c])
      this.waiter?.()
    })
    this.closed = new Promise(resolve => socket.on('close', () => {
      this.ended = true
      this.waiter?.()
      resolve()
    }))
    socket.on('error', () => {})
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)))
      s.once('error', reject)
    })
  }

  write(b: Buffer): void {
    this.socket.write(b)
  }

  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`connection closed with ${this.buf.length}/${n} bytes`)
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${n} bytes (have ${this.buf.length})`)
      await new Promise<void>(resolve => {
        this.waiter = resolve
        setTimeout(resolve, 50)
      })
    }
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(n)
    return out
  }

  async optionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const h = await this.read(20)
    if (h.readBigUInt64BE(0) !== 0x3e889045565a9n) throw new Error(`bad option reply magic ${h.toString('hex')}`)
    const data = await this.read(h.readUInt32BE(16))
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data }
  }

  /** Greeting, client flags, GO on "" → transmission. Returns the transmission flags. */
  async go(name = ''): Promise<number> {
    await this.read(18)
    this.write(hex('00000003'))
    this.write(encodeOption(Option.GO, encodeInfoRequest(name)))
    const info = await this.optionReply()
    const ack = await this.optionReply()
    if (ack.type !== OptReply.ACK) throw new Error('GO refused')
    return info.data.readUInt16BE(10)
  }

  async request(command: number, cookie: bigint, offset: number, length: number, opts: { flags?: number; data?: Buffer } = {}): Promise<void> {
    this.write(encodeRequest({ command, cookie, offset, length, flags: opts.flags ?? 0 }))
    if (opts.data !== undefined) this.write(opts.data)
  }

  async reply(dataLength = 0): Promise<{ error: number; cookie: bigint; data: Buffer }> {
    const h = await this.read(16)
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error(`bad simple reply magic ${h.toString('hex')}`)
    const error = h.readUInt32BE(4)
    const data = error === 0 && dataLength > 0 ? await this.read(dataLength) : Buffer.alloc(0)
    return { error, cookie: h.readBigUInt64BE(8), data }
  }

  close(): void {
    this.socket.destroy()
  }
}

async function serve(t: Test, size: number, opts: FileEngineOptions & { engine?: (e: FileEngine) => BlockEngine } = {}) {
  const vol = tempVolume(size)
  const file = new FileEngine(vol.file, opts)
  const engine = opts.engine?.(file) ?? file
  const server = new NbdServer({ engine })
  const { port } = await server.listen(0, '127.0.0.1')
  const clients: RawClient[] = []
  t.teardown(async () => {
    for (const c of clients) c.close()
    await server.close()
    file.close()
    vol.cleanup()
  })
  const connect = async (): Promise<RawClient> => {
    const c = await RawClient.connect(port)
    clients.push(c)
    return c
  }
  return { file, server, vol, connect }
}

t.test('nbd session - handshake bytes, GO with block size, EXPORT_NAME', async t => {
  const { connect } = await serve(t, MiB, { blockSize: 4096 })
  const c = await connect()
  t.same(await c.read(18), hex('4e42444d41474943 49484156454f5054 0003'), 'greeting')
  c.write(hex('00000003'))
  c.write(encodeOption(Option.GO, encodeInfoRequest('vol0', [InfoType.BLOCK_SIZE])))
  const info = await c.optionReply()
  t.equal(info.type, OptReply.INFO)
  t.same(info.data, hex('0000 0000000000100000 016d'), 'INFO_EXPORT: size 1 MiB, flags HAS|FLUSH|FUA|TRIM|ZEROES|MULTI_CONN')
  const bs = await c.optionReply()
  t.same(bs.data, hex('0003 00000001 00001000 02000000'), 'INFO_BLOCK_SIZE min 1, preferred 4096, max 32 MiB')
  t.equal((await c.optionReply()).type, OptReply.ACK)
  await c.request(Cmd.READ, 7n, 0, 16)
  const r = await c.reply(16)
  t.equal(r.error, 0)
  t.equal(r.cookie, 7n)

  const d = await connect()
  await d.read(18)
  d.write(hex('00000001')) // no NO_ZEROES: 124 zero bytes follow
  d.write(encodeOption(Option.EXPORT_NAME))
  const reply = await d.read(134)
  t.same(reply.subarray(0, 10), hex('0000000000100000 016d'))
  t.ok(reply.subarray(10).every(b => b === 0))
  await d.request(Cmd.FLUSH, 1n, 0, 0)
  t.equal((await d.reply()).error, 0, 'transmission works after EXPORT_NAME')
})

t.test('nbd session - LIST carries the u32 name length; unknown options get ERR_UNSUP and the session goes on', async t => {
  const { connect } = await serve(t, MiB)
  const c = await connect()
  await c.read(18)
  c.write(hex('00000003'))
  c.write(encodeOption(Option.STRUCTURED_REPLY))
  t.match(await c.optionReply(), { option: Option.STRUCTURED_REPLY, type: OptReply.ERR_UNSUP })
  c.write(encodeOption(0x1234, Buffer.alloc(100, 1)))
  t.match(await c.optionReply(), { option: 0x1234, type: OptReply.ERR_UNSUP })
  c.write(encodeOption(Option.LIST))
  const srv = await c.optionReply()
  t.equal(srv.type, OptReply.SERVER)
  t.same(srv.data, hex('00000004 766f6c30'))
  t.equal((await c.optionReply()).type, OptReply.ACK)
  c.write(encodeOption(Option.LIST, Buffer.from('junk')))
  t.equal((await c.optionReply()).type, OptReply.ERR_INVALID, 'LIST with data → ERR_INVALID')
  c.write(encodeOption(Option.INFO, encodeInfoRequest('nosuch')))
  t.equal((await c.optionReply()).type, OptReply.ERR_UNKNOWN, 'INFO on an unknown export')
  c.write(encodeOption(Option.GO, hex('00000010 00')))
  t.equal((await c.optionReply()).type, OptReply.ERR_INVALID, 'malformed GO')
  c.write(encodeOption(Option.GO, encodeInfoRequest('nosuch')))
  t.equal((await c.optionReply()).type, OptReply.ERR_UNKNOWN, 'GO on an unknown export')
  c.write(encodeOption(Option.INFO, encodeInfoRequest('vol0')))
  t.equal((await c.optionReply()).type, OptReply.INFO)
  t.equal((await c.optionReply()).type, OptReply.ACK)
  c.write(encodeOption(Option.ABORT))
  t.equal((await c.optionReply()).type, OptReply.ACK, 'ABORT acknowledged')
  await c.closed
  t.pass('closed after ABORT')
})

t.test('nbd session - protocol violations disconnect', async t => {
  const { connect } = await serve(t, MiB)
  const cases: Array<[string, (c: RawClient) => void]> = [
    ['oversize option', c => {
      c.write(hex('00000003'))
      c.write(hex('49484156454f5054 00000007 00010001'))
    }],
    ['bad option magic', c => {
      c.write(hex('00000003'))
      c.write(hex('49484156454f5055 00000003 00000000'))
    }],
    ['unknown client flags', c => c.write(hex('00000004'))],
    ['unknown export with EXPORT_NAME', c => {
      c.write(hex('00000003'))
      c.write(encodeOption(Option.EXPORT_NAME, Buffer.from('nosuch')))
    }],
  ]
  for (const [what, act] of cases) {
    const c = await connect()
    await c.read(18)
    act(c)
    await c.closed
    t.pass(`${what} → disconnect`)
  }
  const c = await connect()
  await c.go()
  const bad = encodeRequest({ command: Cmd.READ, cookie: 1n, offset: 0, length: 1 })
  bad.writeUInt32BE(0xdeadbeef, 0)
  c.write(bad)
  await c.closed
  t.pass('bad request magic → disconnect')
  const w = await connect()
  await w.go()
  await w.request(Cmd.WRITE, 1n, 0, 32 * MiB + 1)
  await w.closed
  t.pass('WRITE over 32 MiB → disconnect')
})

t.test('nbd session - WRITE to a read-only export gets EPERM and the payload is consumed', async t => {
  const { connect, vol } = await serve(t, MiB, { readOnly: true })
  const c = await connect()
  const flags = await c.go()
  t.equal(flags & 2, 2, 'READ_ONLY advertised')
  await c.request(Cmd.WRITE, 1n, 0, 4096, { data: Buffer.alloc(4096, 0xee) })
  t.match(await c.reply(), { error: Errno.EPERM, cookie: 1n })
  await c.request(Cmd.WRITE_ZEROES, 2n, 0, 4096)
  t.match(await c.reply(), { error: Errno.EPERM, cookie: 2n })
  await c.request(Cmd.TRIM, 3n, 0, 4096)
  t.match(await c.reply(), { error: Errno.EPERM, cookie: 3n })
  await c.request(Cmd.READ, 4n, 0, 4096)
  const r = await c.reply(4096)
  t.match(r, { error: 0, cookie: 4n }, 'next request still parses')
  t.ok(r.data.every(b => b === 0))
  const { readFileSync } = await import('node:fs')
  t.ok(readFileSync(vol.file).every(b => b === 0), 'nothing written')
})

t.test('nbd session - demoted mid-session: writes get EPERM', async t => {
  const { connect, file } = await serve(t, MiB)
  const c = await connect()
  t.equal((await c.go()) & 2, 0, 'writable at handshake')
  await c.request(Cmd.WRITE, 1n, 0, 512, { data: Buffer.alloc(512, 1) })
  t.match(await c.reply(), { error: 0 })
  file.setReadOnly(true)
  await c.request(Cmd.WRITE, 2n, 0, 512, { data: Buffer.alloc(512, 2) })
  t.match(await c.reply(), { error: Errno.EPERM, cookie: 2n })
  await c.request(Cmd.READ, 3n, 0, 512)
  const r = await c.reply(512)
  t.ok(r.data.every(b => b === 1), 'the refused write left no trace')
})

t.test('nbd session - bounds, bad flags, unknown commands', async t => {
  const { connect } = await serve(t, MiB)
  const c = await connect()
  await c.go()
  const cases: Array<[string, number, number, number, number, number]> = [
    ['read past end', Cmd.READ, 0, MiB - 100, 200, Errno.EINVAL],
    ['read starting past end', Cmd.READ, 0, 2 * MiB, 1, Errno.EINVAL],
    ['read over 32 MiB', Cmd.READ, 0, 0, 32 * MiB + 1, Errno.EINVAL],
    ['write-zeroes past end', Cmd.WRITE_ZEROES, 0, MiB - 100, 200, Errno.ENOSPC],
    ['trim past end', Cmd.TRIM, 0, MiB, 1, Errno.EINVAL],
    ['unknown command', 42, 0, 0, 0, Errno.EINVAL],
    ['block status without negotiation', Cmd.BLOCK_STATUS, 0, 0, 512, Errno.EINVAL],
    ['NO_HOLE on READ', Cmd.READ, CmdFlag.NO_HOLE, 0, 512, Errno.EINVAL],
    ['DF without structured replies', Cmd.READ, CmdFlag.DF, 0, 512, Errno.EINVAL],
    ['FUA on READ is accepted', Cmd.READ, CmdFlag.FUA, 0, 512, 0],
    ['NO_HOLE on WRITE_ZEROES', Cmd.WRITE_ZEROES, CmdFlag.NO_HOLE | CmdFlag.FUA, 0, 512, 0],
    ['read up to the last byte', Cmd.READ, 0, MiB - 512, 512, 0],
  ]
  let cookie = 100n
  for (const [what, cmd, flags, offset, length, errno] of cases) {
    await c.request(cmd, ++cookie, offset, length, { flags })
    const r = await c.reply(errno === 0 && cmd === Cmd.READ ? length : 0)
    t.match(r, { error: errno, cookie }, what)
  }
  c.write(encodeRequest({ command: Cmd.READ, cookie: ++cookie, offset: 0xffffffffffffff00n, length: 0x200 }))
  t.match(await c.reply(), { error: Errno.EINVAL, cookie }, 'u64 offset near 2^64 → EINVAL')
  await c.request(Cmd.WRITE, ++cookie, MiB - 100, 200, { data: Buffer.alloc(200, 9) })
  t.match(await c.reply(), { error: Errno.ENOSPC, cookie }, 'write past end → ENOSPC, payload consumed')
  await c.request(Cmd.READ, ++cookie, 0, 8)
  t.match(await c.reply(8), { error: 0, cookie }, 'still in sync')
})

t.test('nbd session - pipelined requests: overlapping write then read keep their order', async t => {
  const { connect, server } = await serve(t, 4 * MiB)
  const c = await connect()
  await c.go()
  // no waiting between requests: all in flight at once
  for (let i = 0; i < 16; i++) {
    await c.request(Cmd.WRITE, BigInt(i), i * 65536, 65536, { data: Buffer.alloc(65536, i + 1) })
  }
  await c.request(Cmd.WRITE, 100n, 0, 4096, { data: Buffer.alloc(4096, 0x77) })
  await c.request(Cmd.READ, 101n, 0, 8192)
  const seen = new Map<bigint, Buffer>()
  for (let i = 0; i < 18; i++) {
    const h = await c.read(16)
    const cookie = h.readBigUInt64BE(8)
    t.equal(h.readUInt32BE(4), 0)
    seen.set(cookie, cookie === 101n ? await c.read(8192) : Buffer.alloc(0))
  }
  t.equal(seen.size, 18, 'every request answered once')
  const data = seen.get(101n) as Buffer
  t.ok(data.subarray(0, 4096).every(b => b === 0x77), 'read sees the later overlapping write')
  t.ok(data.subarray(4096).every(b => b === 1), 'and the earlier one around it')
  await c.request(Cmd.DISC, 200n, 0, 0)
  await c.closed
  t.pass('DISC closes')
  const until = Date.now() + 2000
  while (server.connections > 0 && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 10))
  t.equal(server.connections, 0, 'and the server side is gone too')
})

/** Engine whose writes wait until released; for backpressure and shutdown tests. */
class GatedEngine implements BlockEngine {
  readonly size = 64 * MiB
  readonly blockSize = 4096
  readonly name = 'gated'
  writes = 0
  private gates: Array<() => void> = []
  isReadOnly(): boolean {
    return false
  }
  async read(_offset: number, length: number): Promise<Buffer> {
    return Buffer.alloc(length)
  }
  write(): Promise<void> {
    this.writes++
    return new Promise(resolve => this.gates.push(resolve))
  }
  async writeZeroes(): Promise<void> {}
  async trim(): Promise<void> {}
  async flush(): Promise<void> {}
  releaseAll(): void {
    const g = this.gates
    this.gates = []
    for (const r of g) r()
  }
  get waiting(): number {
    return this.gates.length
  }
}

t.test('nbd session - bytes in flight are bounded: reading pauses, then resumes', async t => {
  const engine = new GatedEngine()
  const reading: boolean[] = []
  const sent: Buffer[][] = []
  const output: SessionOutput = {
    send: (chunks, done) => {
      sent.push(chunks)
      done?.()
    },
    setReading: on => reading.push(on),
    end: () => {},
    destroy: () => t.fail('no disconnect expected'),
  }
  const s = new NbdSession({ engine, output, limits: { maxPayload: 64 * KiB, maxBytesInFlight: 256 * KiB, maxRequests: 100 } })
  s.start()
  s.receive(Buffer.concat([hex('00000003'), encodeOption(Option.GO, encodeInfoRequest(''))]))
  t.equal(s.phase, 'transmission')
  const payload = Buffer.alloc(64 * KiB, 3)
  const reqs: Buffer[] = []
  for (let i = 0; i < 10; i++) {
    reqs.push(encodeRequest({ command: Cmd.WRITE, cookie: BigInt(i), offset: i * payload.length, length: payload.length }), payload)
  }
  s.receive(Buffer.concat(reqs))
  await new Promise(resolve => setImmediate(resolve))
  t.equal(engine.writes, 4, 'only what fits the byte bound is started')
  t.same(reading, [false], 'socket paused')
  t.ok(s.bytesInFlight <= 256 * KiB + 64 * KiB)
  engine.releaseAll()
  await new Promise(resolve => setImmediate(resolve))
  t.equal(engine.writes, 8, 'more parsed from the buffer once replies went out')
  engine.releaseAll()
  await new Promise(resolve => setImmediate(resolve))
  engine.releaseAll()
  await new Promise(resolve => setImmediate(resolve))
  t.equal(engine.writes, 10)
  t.equal(reading.at(-1), true, 'reading resumed')
  t.equal(s.requestsInFlight, 0)
  t.equal(sent.length, 2 + 10, 'greeting, GO replies, ten write replies')
})

t.test('nbd server - close() finishes in-flight requests first', async t => {
  const engine = new GatedEngine()
  const server = new NbdServer({ engine })
  const { port } = await server.listen(0, '127.0.0.1')
  const c = await RawClient.connect(port)
  await c.go()
  await c.request(Cmd.WRITE, 9n, 0, 4096, { data: Buffer.alloc(4096) })
  while (engine.waiting === 0) await new Promise(resolve => setTimeout(resolve, 5))
  t.equal(server.connections, 1)
  let closed = false
  const closing = server.close().then(() => {
    closed = true
  })
  await new Promise(resolve => setTimeout(resolve, 50))
  t.notOk(closed, 'close waits for the in-flight write')
  engine.releaseAll()
  t.match(await c.reply(), { error: 0, cookie: 9n }, 'its reply still arrives')
  await c.closed
  await closing
  t.equal(server.connections, 0)
  t.match(server.stats(), { totalConnections: 1, requests: 1, bytesWritten: 4096 })
})

t.test('nbd server - engine errors map through nbdErrno', async t => {
  const fail = (code: ConstructorParameters<typeof BlockrepError>[0]) => (e: FileEngine): BlockEngine => ({
    size: e.size,
    blockSize: e.blockSize,
    name: e.name,
    isReadOnly: () => false,
    read: () => Promise.reject(new BlockrepError(code, 'boom')),
    write: () => Promise.reject(new BlockrepError(code, 'boom')),
    writeZeroes: () => Promise.reject(new BlockrepError(code, 'boom')),
    trim: () => Promise.reject(new BlockrepError(code, 'boom')),
    flush: () => Promise.reject(new Error('disk on fire')),
  })
  for (const [code, errno] of [['ERR_IO', Errno.EIO], ['ERR_SHUTDOWN', Errno.ESHUTDOWN], ['ERR_NOT_PRIMARY', Errno.EPERM]] as const) {
    const { connect } = await serve(t, MiB, { engine: fail(code) })
    const c = await connect()
    await c.go()
    await c.request(Cmd.READ, 1n, 0, 512)
    t.match(await c.reply(512), { error: errno, cookie: 1n }, `${code} on read → ${errno}, no data sent`)
    await c.request(Cmd.WRITE, 2n, 0, 512, { data: Buffer.alloc(512) })
    t.match(await c.reply(), { error: errno, cookie: 2n }, `${code} on write`)
    await c.request(Cmd.FLUSH, 3n, 0, 0)
    t.match(await c.reply(), { error: Errno.EIO, cookie: 3n }, 'plain Error → EIO')
  }
})

t.test('nbd session - a half-close still gets every reply, then the server closes', async t => {
  const { connect, vol } = await serve(t, MiB)
  const c = await connect()
  await c.go()
  await c.request(Cmd.WRITE, 1n, 512, 512, { data: Buffer.alloc(512, 0x42) })
  await c.request(Cmd.READ, 2n, 512, 512)
  c.socket.end()
  t.match(await c.reply(), { error: 0, cookie: 1n })
  const r = await c.reply(512)
  t.match(r, { error: 0, cookie: 2n })
  t.ok(r.data.every(b => b === 0x42))
  await c.closed
  const { readFileSync } = await import('node:fs')
  t.equal(readFileSync(vol.file)[512], 0x42)
})

t.test('nbd session - TRIM and WRITE_ZEROES past the max block size reach the engine in pieces', async t => {
  const calls: Array<[string, number, number]> = []
  const { connect, vol } = await serve(t, 64 * MiB, {
    engine: e => ({
      size: e.size,
      blockSize: e.blockSize,
      name: e.name,
      isReadOnly: () => false,
      read: (o, n) => e.read(o, n),
      write: (o, d, opts) => e.write(o, d, opts),
      writeZeroes: (o, n, opts) => {
        calls.push(['zero', o, n])
        return e.writeZeroes(o, n, opts)
      },
      trim: (o, n) => {
        calls.push(['trim', o, n])
        return e.trim(o, n)
      },
      flush: () => e.flush(),
    }),
  })
  const { writeFileSync, readFileSync } = await import('node:fs')
  writeFileSync(vol.file, Buffer.alloc(64 * MiB, 0xff))
  const c = await connect()
  await c.go()
  await c.request(Cmd.WRITE_ZEROES, 1n, MiB, 48 * MiB, { flags: CmdFlag.NO_HOLE })
  t.match(await c.reply(), { error: 0, cookie: 1n })
  await c.request(Cmd.TRIM, 2n, 0, 64 * MiB, { flags: CmdFlag.FUA })
  t.match(await c.reply(), { error: 0, cookie: 2n })
  t.same(calls, [
    ['zero', MiB, 32 * MiB], ['zero', 33 * MiB, 16 * MiB],
    ['trim', 0, 32 * MiB], ['trim', 32 * MiB, 32 * MiB],
  ])
  const data = readFileSync(vol.file)
  t.ok(data.subarray(MiB, 49 * MiB).every(b => b === 0), 'zeroed')
  t.equal(data[MiB - 1], 0xff)
  t.equal(data[49 * MiB], 0xff)
})

t.test('nbd server - close(): requests received but not started get ESHUTDOWN, in-flight ones finish', async t => {
  const engine = new GatedEngine()
  const server = new NbdServer({ engine, limits: { maxRequests: 1 } })
  const { port } = await server.listen(0, '127.0.0.1')
  const c = await RawClient.connect(port)
  await c.go()
  await c.request(Cmd.WRITE, 1n, 0, 4096, { data: Buffer.alloc(4096) })
  await c.request(Cmd.READ, 2n, 0, 4096)
  while (engine.waiting === 0) await new Promise(resolve => setTimeout(resolve, 5))
  await new Promise(resolve => setTimeout(resolve, 20)) // let the READ reach the server's buffer
  const closing = server.close()
  t.match(await c.reply(), { error: Errno.ESHUTDOWN, cookie: 2n }, 'the queued READ is refused')
  engine.releaseAll()
  t.match(await c.reply(), { error: 0, cookie: 1n }, 'the running WRITE completes')
  await c.closed
  await closing
  const late = await new Promise<boolean>(resolve => {
    const s = net.connect(port, '127.0.0.1')
    s.on('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.on('error', () => resolve(false))
  })
  t.notOk(late, 'no longer listening')
})

t.test('nbd session - pipelined 32 MiB writes with the client not reading: no deadlock, all answered', async t => {
  const { connect, vol, server } = await serve(t, 64 * MiB)
  const c = await connect()
  await c.go()
  const n = 6
  const payloads = Array.from({ length: n }, (_, i) => Buffer.alloc(32 * MiB, i + 1))
  // everything goes out before a single reply is read: the server must pause reading, not buffer 192 MiB
  for (let i = 0; i < n; i++) await c.request(Cmd.WRITE, BigInt(i), (i % 2) * 32 * MiB, 32 * MiB, { data: payloads[i] as Buffer })
  await new Promise(resolve => setTimeout(resolve, 100))
  t.ok(c.socket.writableLength > 0, `client still has unsent bytes (${c.socket.writableLength}): the server applied backpressure`)
  const cookies: bigint[] = []
  for (let i = 0; i < n; i++) {
    const r = await c.reply()
    t.equal(r.error, 0)
    cookies.push(r.cookie)
  }
  t.same(cookies.sort(), [0n, 1n, 2n, 3n, 4n, 5n])
  const { readFileSync } = await import('node:fs')
  const data = readFileSync(vol.file)
  t.equal(data[0], 5, 'overlapping writes kept their order (last to the first half)')
  t.equal(data[64 * MiB - 1], 6, 'and to the second half')
  t.equal(server.stats().bytesWritten, n * 32 * MiB)
})

t.test('nbd server - option count and handshake time are bounded', async t => {
  const engine = new GatedEngine()
  const server = new NbdServer({ engine, handshakeTimeoutMs: 200, limits: { maxOptions: 5 } })
  const { port } = await server.listen(0, '127.0.0.1')
  t.teardown(() => server.close())
  const c = await RawClient.connect(port)
  await c.read(18)
  c.write(hex('00000003'))
  for (let i = 0; i < 6; i++) c.write(encodeOption(0x99))
  for (let i = 0; i < 5; i++) t.equal((await c.optionReply()).type, OptReply.ERR_UNSUP)
  await c.closed
  t.pass('sixth option → disconnect')
  const idle = await RawClient.connect(port)
  const started = Date.now()
  await idle.closed
  t.ok(Date.now() - started < 2000, 'a silent client is dropped after the handshake timeout')
})
