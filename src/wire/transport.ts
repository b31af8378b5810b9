import net from 'node:net'
import { BlockrepError, ErrorCode } from '../util/errors.js'
import { encodeFrame, FrameDecoder } from './frame-codec.js'
import { MAX_TEXT_LENGTH } from './validate.js'
import type { CodecLimits } from './frame-codec.js'
import type { ErrorMsg, Frame, Message } from './messages.js'

export type LogFn = (obj: object, msg: string) => void

export interface TransportOptions {
  /** Decoder limits (default DEFAULT_LIMITS; pass HANDSHAKE_LIMITS until AUTH_OK, then `setLimits`). */
  limits?: Partial<CodecLimits>
  /** Close with ERR_TIMEOUT after this long with no traffic either way (default: never; sessions PING). */
  idleTimeoutMs?: number
  /** `send` returns false once this many bytes wait in the socket's user-space buffer (default 1 MiB). */
  highWaterMark?: number
  /** Stop reading from the socket while this many received bytes wait undelivered (default 16 MiB). */
  maxQueuedBytes?: number
  /** How long `close` waits for the peer to finish before destroying the socket (default 2000 ms). */
  closeTimeoutMs?: number
  /** Called once with the reason when the connection ends abnormally (no logger is wired yet). */
  log?: LogFn
}

/** Called for each frame in push mode. A throw closes the transport with that error. */
export type FrameHandler = (frame: Frame) => void
/** Called once when the transport ends: undefined after a plain local `close()`, else the reason. */
export type CloseHandler = (err: Error | undefined) => void

interface Waiter {
  resolve: (f: Frame) => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout | undefined
}

/**
 * A framed replication connection over one `net.Socket`.
 *
 * Two ways to receive, one at a time:
 * - pull (the handshake): `await next(timeoutMs)` or `for await (const f of transport)`;
 * - push (streaming): `setHandler(onFrame, onClose)`. Frames queued so far are
 *   delivered first, from a microtask (never inside `setHandler`). `pause()` /
 *   `resume()` stop and restart delivery and reading from the socket.
 *
 * Frames that arrived before the connection ended are still delivered, then
 * the end is reported: `next()` rejects with the reason (ERR_PEER_GONE when the
 * peer went away, the decoder's ERR_FRAME_* error, ERR_TIMEOUT for the idle
 * timeout, or the error given to `close`), and the push-mode `onClose` runs
 * once. A decoder error or idle timeout sends an ERROR frame to the peer, ends
 * the socket and calls `log`.
 */
export class FrameTransport implements AsyncIterable<Frame> {
  readonly remote: string
  private readonly socket: net.Socket
  private readonly decoder: FrameDecoder
  private readonly log: LogFn | undefined
  private readonly highWaterMark: number
  private readonly maxQueuedBytes: number
  private readonly closeTimeoutMs: number

  private queue: Frame[] = []
  private queueHead = 0
  private queuedBytes = 0
  private readPaused = false
  private waiters: Waiter[] = []
  private drainWaiters: { resolve: () => void; reject: (e: Error) => void }[] = []
  private handler: FrameHandler | undefined
  private onCloseHandler: CloseHandler | undefined
  private consumerPaused = false
  private delivering = false

  private ended = false
  private reason: Error | undefined
  /** what `onClose` / `whenClosed` report: undefined for a plain local close */
  private reported: Error | undefined
  private closeNotified = false
  private readonly socketClosed: Promise<void>

  private sent = 0
  private received = 0
  private framesOut = 0
  private framesIn = 0

  constructor(socket: net.Socket, opts: TransportOptions = {}) {
    this.socket = socket
    this.decoder = new FrameDecoder(opts.limits)
    this.log = opts.log
    // never below the socket's own mark, or 'drain' (which only follows a write that returned false) could never come
    this.highWaterMark = Math.max(opts.highWaterMark ?? 1 << 20, socket.writableHighWaterMark)
    this.maxQueuedBytes = opts.maxQueuedBytes ?? 16 << 20
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 2000
    const host = socket.remoteAddress ?? '?'
    this.remote = `${host.includes(':') ? `[${host}]` : host}:${socket.remotePort ?? 0}`
    socket.setNoDelay(true)
    if (opts.idleTimeoutMs !== undefined && opts.idleTimeoutMs > 0) socket.setTimeout(opts.idleTimeoutMs)

    this.socketClosed = socket.destroyed ? Promise.resolve() : new Promise(resolve => socket.once('close', () => resolve()))
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('drain', () => this.settleDrain())
    socket.on('timeout', () => {
      this.fail(new BlockrepError(ErrorCode.TIMEOUT, `no traffic from ${this.remote} for ${opts.idleTimeoutMs} ms`, { context: { remote: this.remote } }))
    })
    socket.on('end', () => this.peerGone(undefined))
    socket.on('error', err => this.peerGone(err))
    socket.on('close', () => this.peerGone(undefined))
    if (socket.destroyed) this.peerGone(undefined)
  }

  /** True once the connection can no longer send: closed locally, by the peer, or after an error. */
  get closed(): boolean {
    return this.ended
  }
  /** Bytes handed to the socket (prefixes, headers and payloads). */
  get bytesSent(): number {
    return this.sent
  }
  /** Bytes read from the socket. */
  get bytesReceived(): number {
    return this.received
  }
  get framesSent(): number {
    return this.framesOut
  }
  get framesReceived(): number {
    return this.framesIn
  }

  /** Change the decoder limits (e.g. HANDSHAKE_LIMITS → DEFAULT_LIMITS after AUTH_OK). */
  setLimits(limits: Partial<CodecLimits>): void {
    this.decoder.setLimits(limits)
  }

  /**
   * Write one frame: prefix+header and payload are written corked, so frames
   * never interleave. The payload is referenced, not copied: do not modify it
   * until it has been written (await `drained()`, or hand over a fresh buffer).
   * Returns false once the socket buffer is past the high-water mark; then
   * await `drained()` before sending more.
   *
   * After the connection has ended, `send` writes nothing and returns false (so
   * a late heartbeat or ack from a timer cannot crash the process); the
   * following `drained()` rejects with the close reason, and the end itself is
   * reported through `next()` / `onClose`.
   * @throws ERR_FRAME_INVALID / ERR_FRAME_TOO_LARGE for a malformed message (a bug at the sender)
   */
  send(msg: Message, payload?: Uint8Array): boolean {
    const [head, body] = encodeFrame(msg, payload)
    if (this.ended) return false
    this.socket.cork()
    this.socket.write(head)
    if (body.length > 0) this.socket.write(body)
    this.socket.uncork()
    this.sent += head.length + body.length
    this.framesOut++
    return this.socket.writableLength < this.highWaterMark
  }

  /** Resolves when `send` would return true again; rejects with the close reason if the connection ends first. */
  drained(): Promise<void> {
    if (this.ended) return Promise.reject(this.gone('drained'))
    if (this.socket.writableLength < this.highWaterMark) return Promise.resolve()
    return new Promise((resolve, reject) => this.drainWaiters.push({ resolve, reject }))
  }

  /**
   * The next frame (pull mode). Rejects with ERR_TIMEOUT after `timeoutMs`
   * (the connection stays open; the caller decides), or with the close reason
   * once the connection has ended and every frame before the end was returned.
   */
  next(timeoutMs?: number): Promise<Frame> {
    if (this.handler) {
      return Promise.reject(new BlockrepError(ErrorCode.PROTOCOL, 'next() called on a transport in push mode', { context: { remote: this.remote } }))
    }
    const frame = this.shift()
    if (frame) return Promise.resolve(frame)
    if (this.ended) return Promise.reject(this.gone('next'))
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined }
      if (timeoutMs !== undefined) {
        waiter.timer = setTimeout(() => {
          this.waiters = this.waiters.filter(w => w !== waiter)
          reject(new BlockrepError(ErrorCode.TIMEOUT, `no frame from ${this.remote} within ${timeoutMs} ms`, { context: { remote: this.remote, timeoutMs } }))
        }, timeoutMs)
      }
      this.waiters.push(waiter)
    })
  }

  /**
   * Iterates frames in pull mode. Ends when the peer goes away (ERR_PEER_GONE)
   * or after a plain local close; throws any other reason (decoder error, idle timeout).
   */
  async *[Symbol.asyncIterator](): AsyncIterator<Frame> {
    for (;;) {
      let frame: Frame
      try {
        frame = await this.next()
      } catch (err) {
        if (this.ended && (err === this.reason || (err as BlockrepError).code === ErrorCode.PEER_GONE) && this.isQuietEnd()) return
        throw err
      }
      yield frame
    }
  }

  /**
   * Switch to push mode: `onFrame` gets every frame from now on (queued ones
   * first, from a microtask), `onClose` runs once when the connection ends,
   * after the last frame. Call once, after the pull-mode handshake.
   */
  setHandler(onFrame: FrameHandler, onClose?: CloseHandler): void {
    if (this.handler) throw new BlockrepError(ErrorCode.PROTOCOL, 'setHandler called twice', { context: { remote: this.remote } })
    if (this.waiters.length > 0) throw new BlockrepError(ErrorCode.PROTOCOL, 'setHandler called while next() is pending', { context: { remote: this.remote } })
    this.handler = onFrame
    this.onCloseHandler = onClose
    queueMicrotask(() => this.deliver())
  }

  /** Push mode: stop delivering frames and reading from the socket (receiver backpressure). */
  pause(): void {
    this.consumerPaused = true
    this.updateReading()
  }

  /** Push mode: deliver queued frames again and resume reading. */
  resume(): void {
    this.consumerPaused = false
    this.updateReading()
    queueMicrotask(() => this.deliver())
  }

  /** Resolves once the socket is closed, with what `onClose` gets. Never rejects. */
  async whenClosed(): Promise<Error | undefined> {
    await this.socketClosed
    return this.reported
  }

  /**
   * Close the connection. With a BlockrepError, an ERROR frame {code, message}
   * goes out first. Frames not yet delivered are dropped; pending `next()` and
   * `drained()` reject with `err` (ERR_PEER_GONE without one). Resolves once the
   * socket is closed (destroyed after `closeTimeoutMs` if the peer does not finish).
   */
  async close(err?: Error): Promise<void> {
    if (!this.ended) {
      this.terminate(err ?? this.goneError('closed locally'), err, true)
      this.dropQueue()
      this.notifyClose()
    } else if (!this.socket.destroyed) {
      this.socket.end()
      setTimeout(() => this.socket.destroy(), this.closeTimeoutMs).unref()
    }
    await this.socketClosed
  }

  private onData(chunk: Buffer): void {
    this.received += chunk.length
    if (this.ended) return
    const frames: Frame[] = []
    let error: Error | undefined
    try {
      this.decoder.pushInto(chunk, frames)
    } catch (err) {
      error = err as Error
    }
    for (const f of frames) this.enqueue(f)
    if (error) this.fail(error)
    else this.deliver()
  }

  private enqueue(frame: Frame): void {
    this.framesIn++
    const waiter = this.waiters.shift()
    if (waiter && this.queueHead === this.queue.length) {
      if (waiter.timer) clearTimeout(waiter.timer)
      waiter.resolve(frame)
      return
    }
    if (waiter) this.waiters.unshift(waiter)
    this.queue.push(frame)
    this.queuedBytes += frame.payload.length
    this.updateReading()
  }

  private shift(): Frame | undefined {
    if (this.queueHead === this.queue.length) return undefined
    const frame = this.queue[this.queueHead]!
    this.queue[this.queueHead++] = undefined as unknown as Frame
    if (this.queueHead === this.queue.length) {
      this.queue = []
      this.queueHead = 0
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead)
      this.queueHead = 0
    }
    this.queuedBytes -= frame.payload.length
    this.updateReading()
    return frame
  }

  private dropQueue(): void {
    this.queue = []
    this.queueHead = 0
    this.queuedBytes = 0
  }

  private updateReading(): void {
    const stop = this.consumerPaused || this.queuedBytes > this.maxQueuedBytes
    if (stop && !this.readPaused) {
      this.readPaused = true
      this.socket.pause()
    } else if (!stop && this.readPaused && this.queuedBytes <= this.maxQueuedBytes / 2) {
      this.readPaused = false
      this.socket.resume()
    }
  }

  /** Push mode: hand queued frames to the handler; report the end once they are all out. */
  private deliver(): void {
    if (!this.handler || this.delivering) return
    this.delivering = true
    try {
      while (!this.consumerPaused && this.handler) {
        const frame = this.shift()
        if (!frame) break
        try {
          this.handler(frame)
        } catch (err) {
          if (!this.ended) {
            this.log?.({ remote: this.remote, err }, 'frame handler threw; closing the connection')
            this.terminate(err as Error, err as Error, true)
            this.dropQueue()
          }
          break
        }
      }
    } finally {
      this.delivering = false
    }
    if (this.ended && this.queueHead === this.queue.length) this.notifyClose()
  }

  /** A decoder error, idle timeout: log, tell the peer, keep what was decoded before it. */
  private fail(err: Error): void {
    if (this.ended) return
    this.log?.({ remote: this.remote, code: (err as BlockrepError).code, err }, `closing replication connection: ${err.message}`)
    this.terminate(err, err, true)
    this.deliver()
    this.flushWaiters()
  }

  private peerGone(err: Error | undefined): void {
    if (this.ended) {
      this.flushWaiters()
      this.deliver()
      return
    }
    const reason = this.goneError(err ? `connection error: ${err.message}` : 'peer closed the connection', err)
    if (err) this.log?.({ remote: this.remote, err }, `replication connection failed: ${err.message}`)
    this.terminate(reason, reason, false)
    this.deliver()
    this.flushWaiters()
  }

  /** Mark the transport ended with `reason`; optionally send an ERROR frame and end the socket. */
  private terminate(reason: Error, reported: Error | undefined, endSocket: boolean): void {
    this.ended = true
    this.reason = reason
    this.reported = reported
    for (const w of this.drainWaiters.splice(0)) w.reject(reason)
    for (const w of this.waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer)
      w.reject(reason)
    }
    if (!endSocket || this.socket.destroyed) return
    if (reported instanceof BlockrepError && this.socket.writable) {
      try {
        const msg: ErrorMsg = { type: 'ERROR', code: reported.code, message: reported.message.slice(0, MAX_TEXT_LENGTH) }
        const [head] = encodeFrame(msg)
        this.socket.write(head)
        this.sent += head.length
        this.framesOut++
      } catch {
        // the ERROR frame is a courtesy; the socket still ends
      }
    }
    this.socket.end()
    // the peer gets closeTimeoutMs to read the ERROR frame and finish; then we stop waiting
    setTimeout(() => this.socket.destroy(), this.closeTimeoutMs).unref()
    // keep reading so the peer's FIN arrives even if the consumer had paused us
    this.socket.resume()
  }

  /** Pull mode: once the queue is empty after the end, reject whoever still waits. */
  private flushWaiters(): void {
    if (this.queueHead !== this.queue.length) return
    for (const w of this.waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer)
      w.reject(this.reason ?? this.goneError('closed'))
    }
  }

  private notifyClose(): void {
    const cb = this.onCloseHandler
    if (this.closeNotified || !cb) return
    this.closeNotified = true
    queueMicrotask(() => cb(this.reported))
  }

  private settleDrain(): void {
    if (this.socket.writableLength >= this.highWaterMark) return
    for (const w of this.drainWaiters.splice(0)) w.resolve()
  }

  private isQuietEnd(): boolean {
    return this.reported === undefined || (this.reported as BlockrepError).code === ErrorCode.PEER_GONE
  }

  private gone(op: string): Error {
    return this.reason ?? this.goneError(`${op} after close`)
  }

  private goneError(why: string, cause?: Error): BlockrepError {
    return new BlockrepError(ErrorCode.PEER_GONE, `connection to ${this.remote}: ${why}`, {
      cause,
      context: { remote: this.remote },
    })
  }
}

/** Turn a received ERROR frame into a BlockrepError with the peer's code (ERR_PROTOCOL when the code is unknown). */
export function peerError(msg: ErrorMsg): BlockrepError {
  const known = (Object.values(ErrorCode) as string[]).includes(msg.code)
  return new BlockrepError(known ? (msg.code as ErrorCode) : ErrorCode.PROTOCOL, `peer reported: ${msg.message}`, {
    context: { remoteCode: msg.code, fromPeer: true },
  })
}

/**
 * Dial `host:port` and wrap the socket. Rejects with ERR_TIMEOUT after
 * `timeoutMs` (default 10 s) or ERR_PEER_GONE when the connection fails.
 */
export function connectTransport(host: string, port: number, opts: TransportOptions & { timeoutMs?: number } = {}): Promise<FrameTransport> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new BlockrepError(ErrorCode.TIMEOUT, `connect to ${host}:${port} timed out after ${timeoutMs} ms`, { context: { host, port, timeoutMs } }))
    }, timeoutMs)
    const onError = (err: Error): void => {
      clearTimeout(timer)
      reject(new BlockrepError(ErrorCode.PEER_GONE, `connect to ${host}:${port} failed: ${err.message}`, { cause: err, context: { host, port } }))
    }
    socket.once('error', onError)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.off('error', onError)
      resolve(new FrameTransport(socket, opts))
    })
  })
}
