import type { BlockEngine } from './engine.js'
import {
  CLIENT_FLAGS_KNOWN, ClientFlag, Cmd, Errno, HandshakeFlag, Limits, OptionName, Size, nameOf,
} from './constants.js'
import { NbdDecoder, encodeGreeting, encodeSimpleReply } from './codec.js'
import type { Frame, OptionFrame, RequestFrame } from './codec.js'
import { answerOption, transmissionFlags } from './handshake.js'
import type { ExportView } from './handshake.js'
import { RequestRunner } from './requests.js'
import type { RequestResult } from './requests.js'

/** What the session needs from its transport (a net.Socket in production, an array in tests). */
export interface SessionOutput {
  /** Write the buffers back to back with nothing interleaved; `done` once flushed (or failed). */
  send(chunks: Buffer[], done?: () => void): void
  /** Pause (false) or resume (true) reading: backpressure. */
  setReading(on: boolean): void
  /** Graceful close once everything sent is flushed. */
  end(): void
  /** Hard disconnect. */
  destroy(): void
}

/** pino-compatible subset. */
export interface NbdLogger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

export interface SessionLimits {
  /** largest READ/WRITE payload (also advertised as the maximum block size) */
  maxPayload: number
  maxOptionLength: number
  maxOptions: number
  /** requests parsed but not yet answered */
  maxRequests: number
  /** request headers + write payloads + read data not yet flushed to the socket */
  maxBytesInFlight: number
}

/** Counters shared by every session of one server. */
export interface NbdStats {
  connections: number
  totalConnections: number
  requests: number
  errors: number
  /** bytes read from the volume and sent to clients */
  bytesRead: number
  /** bytes clients wrote to the volume */
  bytesWritten: number
}

export function newStats(): NbdStats {
  return { connections: 0, totalConnections: 0, requests: 0, errors: 0, bytesRead: 0, bytesWritten: 0 }
}

export interface SessionOptions {
  engine: BlockEngine
  output: SessionOutput
  log?: NbdLogger
  limits?: Partial<SessionLimits>
  stats?: NbdStats
  /** advertise NBD_FLAG_CAN_MULTI_CONN (true: engine.flush covers every connection) */
  multiConn?: boolean
  id?: number
}

type State = 'handshake' | 'transmission' | 'draining' | 'closed'

const noop = (): void => {}
const silent: NbdLogger = { debug: noop, info: noop, warn: noop, error: noop }

export const DEFAULT_SESSION_LIMITS: SessionLimits = {
  maxPayload: Limits.MAX_PAYLOAD,
  maxOptionLength: Limits.MAX_OPTION_LENGTH,
  maxOptions: Limits.MAX_OPTIONS,
  maxRequests: 64,
  maxBytesInFlight: 80 * 1024 * 1024,
}

/**
 * One NBD connection: fixed-newstyle handshake, then transmission. Requests
 * run concurrently up to the limits, ordered by `RequestRunner` (a mutation
 * waits for earlier overlapping mutations, a READ for earlier overlapping
 * mutations, a FLUSH for every earlier mutation). Replies go out as they
 * complete, each header + data written back to back.
 */
export class NbdSession {
  private readonly engine: BlockEngine
  private readonly out: SessionOutput
  private readonly log: NbdLogger
  private readonly limits: SessionLimits
  private readonly stats: NbdStats
  private readonly multiConn: boolean
  private readonly id: number
  private readonly decoder: NbdDecoder
  private readonly exportView: ExportView
  private readonly requests: RequestRunner
  private state: State = 'handshake'
  private shuttingDown = false
  private noZeroes = false
  private fixedNewstyle = false
  private optionCount = 0
  private inflight = 0
  private inflightBytes = 0
  private reading = true
  private pumping = false
  private peerDone = false
  /** releases for replies handed to the transport but not yet flushed */
  private readonly unflushed = new Set<() => void>()
  private idleWaiters: Array<() => void> = []

  constructor(opts: SessionOptions) {
    this.engine = opts.engine
    this.out = opts.output
    this.log = opts.log ?? silent
    this.limits = { ...DEFAULT_SESSION_LIMITS, ...opts.limits }
    this.stats = opts.stats ?? newStats()
    this.multiConn = opts.multiConn ?? true
    this.id = opts.id ?? 0
    this.decoder = new NbdDecoder(this.limits)
    const engine = this.engine
    const multiConn = this.multiConn
    this.exportView = {
      name: engine.name,
      size: engine.size,
      blockSize: engine.blockSize,
      transmissionFlags: () => transmissionFlags(engine.isReadOnly(), multiConn),
    }
    // a bound below one full request could stall a single large WRITE forever
    if (this.limits.maxBytesInFlight < this.limits.maxPayload + Size.REQUEST) {
      this.limits.maxBytesInFlight = this.limits.maxPayload + Size.REQUEST
    }
    this.requests = new RequestRunner(this.engine, this.log, this.stats, this.id, this.limits.maxPayload)
  }

  get phase(): State {
    return this.state
  }

  get requestsInFlight(): number {
    return this.inflight
  }

  get bytesInFlight(): number {
    return this.inflightBytes
  }

  /** Send the greeting; call once the transport is connected. */
  start(): void {
    this.out.send([encodeGreeting(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES)])
  }

  /** Bytes from the client. */
  receive(chunk: Buffer): void {
    if (this.state === 'closed' || this.state === 'draining') return
    this.decoder.push(chunk)
    this.pump()
  }

  /** The transport is gone (peer closed, error, or our own end/destroy). */
  transportClosed(): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.decoder.discard()
    // a dead socket may never call back for what was queued on it
    for (const release of [...this.unflushed]) release()
    this.settleIfIdle()
  }

  /** The peer will send nothing more (TCP half-close): answer what is in flight, then close. */
  peerEnded(): void {
    this.peerDone = true
    if (this.state === 'handshake') this.close('peer closed during handshake', false)
    else this.pump()
  }

  /**
   * Server shutdown: stop reading, answer requests already received,
   * finish those in flight, then close. Resolves once nothing is in flight.
   */
  shutdown(): Promise<void> {
    this.shuttingDown = true
    if (this.state === 'handshake') {
      this.close('shutdown during handshake', false)
    } else if (this.state === 'transmission') {
      // requests already buffered are answered ESHUTDOWN (spec: Terminating the transmission phase)
      this.pump()
      this.beginDrain()
    }
    return this.idle()
  }

  /** Resolves when no request is in flight (engine call running or reply unflushed). */
  idle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve()
    return new Promise(resolve => this.idleWaiters.push(resolve))
  }

  private pump(): void {
    if (this.pumping) return
    this.pumping = true
    try {
      // while shutting down, what is already buffered is answered ESHUTDOWN: cheap, and bounded
      while ((this.state === 'handshake' || this.state === 'transmission') && (!this.full() || this.shuttingDown)) {
        let frame: Frame | undefined
        try {
          frame = this.decoder.next()
        } catch (err) {
          this.log.warn({ conn: this.id, err }, 'nbd: protocol violation, disconnecting')
          this.close('protocol violation', true)
          return
        }
        if (frame === undefined) {
          // everything the peer sent before its half-close has been taken in
          if (this.peerDone) this.beginDrain()
          break
        }
        this.dispatch(frame)
      }
    } finally {
      this.pumping = false
    }
    this.updateReading()
  }

  private full(): boolean {
    return this.inflight >= this.limits.maxRequests || this.inflightBytes >= this.limits.maxBytesInFlight
  }

  private updateReading(): void {
    const open = this.state === 'handshake' || (this.state === 'transmission' && !this.shuttingDown)
    const room = this.inflight === 0 ||
      (!this.full() && this.inflightBytes + this.decoder.bufferedBytes < this.limits.maxBytesInFlight)
    const want = open && room
    if (want !== this.reading) {
      this.reading = want
      this.out.setReading(want)
    }
  }

  private dispatch(frame: Frame): void {
    switch (frame.type) {
      case 'clientFlags':
        if ((frame.flags & ~CLIENT_FLAGS_KNOWN) !== 0) {
          this.log.warn({ conn: this.id, flags: frame.flags }, 'nbd: unknown client flags, disconnecting')
          this.close('unknown client flags', true)
          return
        }
        this.fixedNewstyle = (frame.flags & ClientFlag.FIXED_NEWSTYLE) !== 0
        this.noZeroes = (frame.flags & ClientFlag.NO_ZEROES) !== 0
        return
      case 'option':
        this.handleOption(frame)
        return
      case 'request':
        this.handleRequest(frame)
        return
    }
  }

  // Handshake

  private handleOption(f: OptionFrame): void {
    if (++this.optionCount > this.limits.maxOptions) {
      this.log.warn({ conn: this.id, count: this.optionCount }, 'nbd: too many options, disconnecting')
      this.close('too many options', true)
      return
    }
    this.log.debug({ conn: this.id, option: nameOf(OptionName, f.option), length: f.data.length }, 'nbd: option')
    const action = answerOption(f, {
      export: this.exportView,
      fixedNewstyle: this.fixedNewstyle,
      noZeroes: this.noZeroes,
      maxPayload: this.limits.maxPayload,
    })
    if (action.next === 'disconnect') {
      this.log.debug({ conn: this.id, reason: action.reason }, 'nbd: disconnecting during handshake')
      this.close(action.reason, true)
      return
    }
    this.out.send(action.send)
    if (action.next === 'close') {
      this.close(action.reason, false)
    } else if (action.next === 'transmission') {
      this.state = 'transmission'
      this.decoder.enterTransmission()
      this.log.debug({ conn: this.id, name: action.name, size: this.engine.size, readOnly: this.engine.isReadOnly() },
        'nbd: transmission')
    }
  }

  // Transmission

  private handleRequest(f: RequestFrame): void {
    if (f.command === Cmd.DISC) {
      this.log.debug({ conn: this.id }, 'nbd: disconnect requested')
      this.beginDrain()
      return
    }
    const readData = f.command === Cmd.READ && f.length <= this.limits.maxPayload ? f.length : 0
    const cost = Size.REQUEST + (f.data?.length ?? 0) + readData
    this.inflight++
    this.inflightBytes += cost
    this.stats.requests++
    const run = this.shuttingDown ? Promise.resolve({ error: Errno.ESHUTDOWN }) : this.requests.run(f)
    void run.then(result => this.finish(f, result, cost))
  }

  private finish(f: RequestFrame, result: RequestResult, cost: number): void {
    this.requests.account(f, result)
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      this.unflushed.delete(release)
      this.inflight--
      this.inflightBytes -= cost
      if (this.state === 'draining' && this.inflight === 0) this.close('drained', false)
      this.settleIfIdle()
      this.pump()
    }
    if (this.state === 'closed') {
      release()
      return
    }
    this.unflushed.add(release)
    const header = encodeSimpleReply(f.cookie, result.error)
    const data = result.error === Errno.OK ? result.data : undefined
    this.out.send(data !== undefined && data.length > 0 ? [header, data] : [header], release)
  }

  private beginDrain(): void {
    if (this.state !== 'transmission') return
    this.state = 'draining'
    this.decoder.discard()
    this.updateReading()
    if (this.inflight === 0) this.close('drained', false)
  }

  private close(reason: string, hard: boolean): void {
    if (this.state === 'closed') return
    this.log.debug({ conn: this.id, reason }, 'nbd: closing')
    this.state = 'closed'
    this.decoder.discard()
    this.updateReading()
    if (hard) this.out.destroy()
    else this.out.end()
    this.settleIfIdle()
  }

  private settleIfIdle(): void {
    if (this.inflight !== 0) return
    const waiters = this.idleWaiters
    this.idleWaiters = []
    for (const w of waiters) w()
  }
}
