import type { BlockEngine } from './engine.js'
import { Cmd, CmdFlag, CmdName, Errno, nameOf } from './constants.js'
import type { RequestFrame } from './codec.js'
import { nbdErrno } from './errno.js'
import type { NbdLogger, NbdStats } from './session.js'

/** How a request ended: its NBD errno, and for a successful READ the data. */
export interface RequestResult {
  error: number
  data?: Buffer
}

interface Mutation {
  start: number
  end: number
  done: Promise<void>
}

const noop = (): void => {}

/**
 * Runs the transmission-phase requests of one NBD connection against the
 * engine. Requests run concurrently; a mutation (WRITE, WRITE_ZEROES, TRIM)
 * waits for earlier mutations of this connection that overlap it, a READ for
 * earlier overlapping mutations, a FLUSH for every earlier mutation. Engine
 * errors become NBD errnos. Replies and flow control stay with the session.
 */
export class RequestRunner {
  private readonly mutations = new Set<Mutation>()

  constructor(
    private readonly engine: BlockEngine,
    private readonly log: NbdLogger,
    private readonly stats: NbdStats,
    /** connection id, for the log */
    private readonly conn: number,
    /** largest READ/WRITE payload, and the piece size for TRIM / WRITE_ZEROES */
    private readonly maxPayload: number,
  ) {}

  /** Validate and run one request (not DISC); resolves with its errno and READ data, never rejects. */
  run(f: RequestFrame): Promise<RequestResult> {
    const bad = this.validate(f)
    if (bad !== Errno.OK) return Promise.resolve({ error: bad })
    const end = f.offset + f.length
    const fua = (f.flags & CmdFlag.FUA) !== 0
    switch (f.command) {
      case Cmd.READ: {
        const deps = this.overlapping(f.offset, end)
        return this.guard(async () => {
          await deps
          if (f.length === 0) return { error: Errno.OK, data: Buffer.alloc(0) }
          const data = await this.engine.read(f.offset, f.length)
          if (data.length !== f.length) return { error: Errno.EIO }
          return { error: Errno.OK, data }
        })
      }
      case Cmd.WRITE: {
        const data = f.data as Buffer
        return this.mutate(f.offset, end, () => this.engine.write(f.offset, data, { fua }))
      }
      case Cmd.WRITE_ZEROES:
        return this.mutate(f.offset, end, () =>
          this.chunked(f.offset, f.length, (o, n) => this.engine.writeZeroes(o, n, { fua })))
      case Cmd.TRIM:
        return this.mutate(f.offset, end, async () => {
          await this.chunked(f.offset, f.length, (o, n) => this.engine.trim(o, n))
          // trim has no fua parameter: a flush makes whatever it did durable
          if (fua) await this.engine.flush()
        })
      case Cmd.FLUSH: {
        const deps = Promise.all([...this.mutations].map(m => m.done))
        return this.guard(async () => {
          await deps
          await this.engine.flush()
          return { error: Errno.OK }
        })
      }
      default:
        return Promise.resolve({ error: Errno.EINVAL })
    }
  }

  /** Count a finished request (its reply not yet sent) in the server's stats. */
  account(f: RequestFrame, result: RequestResult): void {
    if (result.error !== Errno.OK) {
      this.stats.errors++
      this.log.debug({ conn: this.conn, cmd: nameOf(CmdName, f.command), offset: f.offset, length: f.length,
        errno: result.error }, 'nbd: request failed')
    } else if (f.command === Cmd.READ) {
      this.stats.bytesRead += f.length
    } else if (f.command === Cmd.WRITE) {
      this.stats.bytesWritten += f.length
    }
  }

  /** Errno for a request that must not reach the engine, or OK. */
  private validate(f: RequestFrame): number {
    const allowed = f.command === Cmd.WRITE_ZEROES ? CmdFlag.FUA | CmdFlag.NO_HOLE : CmdFlag.FUA
    if ((f.flags & ~allowed) !== 0) return Errno.EINVAL
    const size = this.engine.size
    const end = f.offset + f.length
    switch (f.command) {
      case Cmd.READ:
        if (f.length > this.maxPayload) return Errno.EINVAL
        return end > size ? Errno.EINVAL : Errno.OK
      case Cmd.WRITE:
      case Cmd.WRITE_ZEROES:
        if (this.engine.isReadOnly()) return Errno.EPERM
        return end > size ? Errno.ENOSPC : Errno.OK
      case Cmd.TRIM:
        if (this.engine.isReadOnly()) return Errno.EPERM
        return end > size ? Errno.EINVAL : Errno.OK
      case Cmd.FLUSH:
        return Errno.OK
      default:
        return Errno.EINVAL
    }
  }

  /**
   * TRIM and WRITE_ZEROES carry no payload, so clients send them past the
   * maximum block size (qemu: up to 2 GiB); the engine gets pieces no larger
   * than a WRITE could be.
   */
  private async chunked(offset: number, length: number, fn: (offset: number, length: number) => Promise<void>): Promise<void> {
    for (let done = 0; done < length;) {
      const n = Math.min(length - done, this.maxPayload)
      await fn(offset + done, n)
      done += n
    }
  }

  private overlapping(start: number, end: number): Promise<unknown> | undefined {
    const deps: Promise<void>[] = []
    for (const m of this.mutations) if (m.start < end && start < m.end) deps.push(m.done)
    return deps.length === 0 ? undefined : Promise.all(deps)
  }

  /** Run a mutation after the earlier overlapping ones; register it for later reads/writes/flushes. */
  private mutate(start: number, end: number, fn: () => Promise<void>): Promise<RequestResult> {
    const deps = this.overlapping(start, end)
    const result = this.guard(async () => {
      await deps
      if (end > start) await fn()
      return { error: Errno.OK }
    })
    const m: Mutation = { start, end, done: result.then(noop) }
    this.mutations.add(m)
    void m.done.then(() => this.mutations.delete(m))
    return result
  }

  private async guard(fn: () => Promise<RequestResult>): Promise<RequestResult> {
    try {
      return await fn()
    } catch (err) {
      const error = nbdErrno(err)
      this.log.warn({ conn: this.conn, err, errno: error }, 'nbd: engine error')
      return { error }
    }
  }
}
