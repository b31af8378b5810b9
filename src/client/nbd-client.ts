import net from 'node:net'
import { BlockrepError } from '../util/errors.js'

/*
 * A small NBD client (fixed newstyle, OPT_GO, simple replies) used by the demo,
 * the benchmarks and the end-to-end tests to drive the export the way qemu
 * does, with many requests in flight.
 *
 * greeting:  u64 NBDMAGIC | u64 IHAVEOPT | u16 handshake flags
 * client:    u32 flags
 * option:    u64 IHAVEOPT | u32 option | u32 length | data
 * reply:     u64 0x3e889045565a9 | u32 option | u32 type | u32 length | data
 * request:   u32 0x25609513 | u16 flags | u16 type | u64 cookie | u64 offset | u32 length | [data]
 * reply:     u32 0x67446698 | u32 error | u64 cookie | [data]
 */
const IHAVEOPT = 0x49484156454f5054n
const OPT_REPLY_MAGIC = 0x3e889045565a9n
const REQUEST_MAGIC = 0x25609513
const SIMPLE_REPLY_MAGIC = 0x67446698
const OPT_GO = 7
const REP_ACK = 1
const REP_INFO = 3
const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6 } as const
const FLAG_FUA = 1

interface Pending {
  resolve: (r: RawReply) => void
  reject: (e: Error) => void
  readLength: number
}

/** A simple reply as it came: errno 0 and the data of a READ, or the error number. */
export interface RawReply {
  errno: number
  data: Buffer
}

export interface ConnectOptions {
  /** give up on connect + handshake after this long (ERR_TIMEOUT); default: no limit */
  timeoutMs?: number
}

export class NbdClient {
  size = 0
  flags = 0
  private buf: Buffer = Buffer.alloc(0)
  private waiters: (() => void)[] = []
  private pending = new Map<bigint, Pending>()
  private cookie = 0n
  private transmission = false
  private err: Error | null = null
  private closeHandlers: ((err: Error) => void)[] = []
  private chunks: Buffer[] = []
  private chunkBytes = 0
  /** bytes the next reply needs before it can be parsed */
  private want = 16

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      if (this.transmission) {
        // gather a large READ reply's chunks and join them once, not once per chunk
        this.chunks.push(d)
        this.chunkBytes += d.length
        if (this.buf.length + this.chunkBytes < this.want) return
        this.buf = Buffer.concat([this.buf, ...this.chunks])
        this.chunks = []
        this.chunkBytes = 0
        this.drainReplies()
        return
      }
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d
      this.wake()
    })
    const fail = (e?: Error) => {
      this.err ??= e ?? new BlockrepError('ERR_PEER_GONE', 'NBD server closed the connection')
      for (const p of this.pending.values()) p.reject(this.err)
      this.pending.clear()
      this.wake()
      const handlers = this.closeHandlers
      this.closeHandlers = []
      for (const h of handlers) h(this.err)
    }
    socket.on('error', fail)
    socket.on('close', () => fail())
  }

  /** Connects and negotiates export `name` with OPT_GO. */
  static async connect(host: string, port: number, name = '', opts: ConnectOptions = {}): Promise<NbdClient> {
    // keep-alive probes notice a peer that vanished without a FIN (a cut link, a dead host)
    const socket = net.connect({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 5000 })
    let timer: NodeJS.Timeout | undefined
    const timeout = opts.timeoutMs === undefined ? null : new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new BlockrepError('ERR_TIMEOUT', `NBD connect + handshake to ${host}:${port} took over ${opts.timeoutMs} ms`, { context: { host, port } })
        socket.destroy(err)
        reject(err)
      }, opts.timeoutMs)
    })
    const setup = (async () => {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve)
        socket.once('error', reject)
      })
      const c = new NbdClient(socket)
      await c.handshake(name)
      return c
    })()
    try {
      return await (timeout === null ? setup : Promise.race([setup, timeout]))
    } catch (err) {
      socket.destroy()
      setup.catch(() => {})
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  /** Called once when the connection is gone (closed, reset, or destroyed), with the reason. */
  onClose(fn: (err: Error) => void): void {
    if (this.err) fn(this.err)
    else this.closeHandlers.push(fn)
  }

  /** True once the connection is gone. */
  get closed(): boolean {
    return this.err !== null
  }

  /** Hard close: pending requests reject with ERR_PEER_GONE (or `err`). */
  destroy(err?: Error): void {
    this.socket.destroy(err)
  }

  get readOnly(): boolean {
    return (this.flags & 2) !== 0
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  private async take(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.err) throw this.err
      await new Promise<void>((r) => this.waiters.push(r))
    }
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(n)
    return out
  }

  private async handshake(name: string): Promise<void> {
    const g = await this.take(18)
    if (g.readBigUInt64BE(8) !== IHAVEOPT) throw new BlockrepError('ERR_NBD_PROTOCOL', 'server is not fixed-newstyle')
    const flags = Buffer.alloc(4)
    flags.writeUInt32BE(3)
    const n = Buffer.from(name)
    const data = Buffer.alloc(4 + n.length + 2)
    data.writeUInt32BE(n.length, 0)
    n.copy(data, 4)
    const opt = Buffer.alloc(16)
    opt.writeBigUInt64BE(IHAVEOPT, 0)
    opt.writeUInt32BE(OPT_GO, 8)
    opt.writeUInt32BE(data.length, 12)
    this.socket.write(Buffer.concat([flags, opt, data]))
    for (;;) {
      const h = await this.take(20)
      if (h.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw new BlockrepError('ERR_NBD_PROTOCOL', 'bad option reply magic')
      const type = h.readUInt32BE(12)
      const body = await this.take(h.readUInt32BE(16))
      if (type === REP_ACK) break
      if (type === REP_INFO && body.readUInt16BE(0) === 0) {
        this.size = Number(body.readBigUInt64BE(2))
        this.flags = body.readUInt16BE(10)
      } else if (type >= 0x80000000) {
        throw new BlockrepError('ERR_NBD_PROTOCOL', `export "${name}" refused: option error ${type - 0x80000000} ${body.toString()}`)
      }
    }
    this.transmission = true
    this.drainReplies()
  }

  private drainReplies(): void {
    for (;;) {
      this.want = 16
      if (this.buf.length < 16) return
      if (this.buf.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) {
        this.socket.destroy(new BlockrepError('ERR_NBD_PROTOCOL', 'bad reply magic'))
        return
      }
      const cookie = this.buf.readBigUInt64BE(8)
      const p = this.pending.get(cookie)
      if (!p) {
        this.socket.destroy(new BlockrepError('ERR_NBD_PROTOCOL', `reply for unknown cookie ${cookie}`))
        return
      }
      const error = this.buf.readUInt32BE(4)
      const need = 16 + (error === 0 ? p.readLength : 0)
      this.want = need
      if (this.buf.length < need) return
      // a large READ gets a view of the joined buffer (it is mostly this reply); a small one a copy, so it pins nothing
      const data = need > 65536 ? this.buf.subarray(16, need) : Buffer.from(this.buf.subarray(16, need))
      this.buf = this.buf.subarray(need)
      this.pending.delete(cookie)
      p.resolve({ errno: error, data })
    }
  }

  private async request(type: number, flags: number, offset: number, length: number, payload?: Buffer): Promise<Buffer> {
    const r = await this.command(type, flags, offset, length, payload)
    if (r.errno !== 0) throw new NbdError(r.errno)
    return r.data
  }

  /**
   * Send any transmission request (`type` and `flags` as on the wire);
   * resolves with the reply whatever its errno, rejects only when the
   * connection is lost before the reply.
   */
  command(type: number, flags: number, offset: number, length: number, payload?: Buffer): Promise<RawReply> {
    if (this.err) return Promise.reject(this.err)
    const cookie = ++this.cookie
    const h = Buffer.alloc(28)
    h.writeUInt32BE(REQUEST_MAGIC, 0)
    h.writeUInt16BE(flags, 4)
    h.writeUInt16BE(type, 6)
    h.writeBigUInt64BE(cookie, 8)
    h.writeBigUInt64BE(BigInt(offset), 16)
    h.writeUInt32BE(length, 24)
    const p = new Promise<RawReply>((resolve, reject) => this.pending.set(cookie, { resolve, reject, readLength: type === CMD.READ ? length : 0 }))
    if (payload) {
      this.socket.cork()
      this.socket.write(h)
      this.socket.write(payload)
      this.socket.uncork()
    } else {
      this.socket.write(h)
    }
    return p
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.request(CMD.READ, 0, offset, length)
  }

  async write(offset: number, data: Buffer, fua = false): Promise<void> {
    await this.request(CMD.WRITE, fua ? FLAG_FUA : 0, offset, data.length, data)
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    await this.request(CMD.WRITE_ZEROES, 0, offset, length)
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.request(CMD.TRIM, 0, offset, length)
  }

  async flush(): Promise<void> {
    await this.request(CMD.FLUSH, 0, 0, 0)
  }

  /** Sends DISC once every reply is in, and closes. */
  async close(): Promise<void> {
    while (this.pending.size > 0 && !this.err) await new Promise((r) => setTimeout(r, 2))
    if (!this.err) {
      const h = Buffer.alloc(28)
      h.writeUInt32BE(REQUEST_MAGIC, 0)
      h.writeUInt16BE(CMD.DISC, 6)
      this.socket.end(h)
    }
    this.socket.destroySoon?.()
  }
}

/** An NBD error reply (errno in `errno`). */
export class NbdError extends BlockrepError {
  constructor(readonly errno: number) {
    super('ERR_NBD_PROTOCOL', `NBD error reply: errno ${errno}`, { context: { errno } })
  }
}
