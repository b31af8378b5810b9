import net from 'node:net'
import { BlockrepError, ErrorCode } from '../util/errors.js'
import { encodeFrame, FrameDecoder } from './frame-codec.js'
import { FrameQueue } from './frame-queue.js'
import { MAX_TEXT_LENGTH } from './validate.js'
import type { CodecLimits } from './frame-codec.js'
import type { CloseHandler, FrameHandler } from './frame-queue.js'
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

export type { CloseHandler, FrameHandler } from './frame-queue.js'

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
  private readonly closeTimeoutMs: number
  private readonly frames: FrameQueue
  private drainWaiters: { resolve: () => void; reject: (e: Error) => void }[] = []

  private ended = false
  private reason: Error | undefined
  /** what `onClose` / `whenClosed` report: undefined for a plain local close */
  private reported: Error | undefined
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
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 2000
    const host = socket.remoteAddress ?? '?'
    this.remote = `${host.includes(':') ? `[${host}]` : host}:${socket.remotePort ?? 0}`
    this.frames = new FrameQueue({
      remote: this.remote,
      maxQueuedBytes: opts.maxQueuedBytes ?? 16 << 20,
      isEnded: () => this.ended,
      gone: op => this.gone(op),
      closeReport: () => this.reported,
      setReading: on => (on ? socket.resume() : socket.pause()),
      handlerThrew: err => {
        this.log?.({ remote: this.remote, err }, 'frame handler threw; closing the connection')
        this.terminate(err, err, true)
      },
    })
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
    return this.frames.next(timeoutMs)
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
    this.frames.setHandler(onFrame, onClose)
  }

  /** Push mode: stop delivering frames and reading from the socket (receiver backpressure). */
  pause(): void {
    this.frames.pause()
  }

  /** Push mode: deliver queued frames again and resume reading. */
  resume(): void {
    this.frames.resume()
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
      this.frames.drop()
      this.frames.notifyClose()
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
    for (const f of frames) {
      this.framesIn++
      this.frames.push(f)
    }
    if (error) this.fail(error)
    else this.frames.deliver()
  }

  /** A decoder error, idle timeout: log, tell the peer, keep what was decoded before it. */
  private fail(err: Error): void {
    if (this.ended) return
    this.log?.({ remote: this.remote, code: (err as BlockrepError).code, err }, `closing replication connection: ${err.message}`)
    this.terminate(err, err, true)
    this.frames.deliver()
    this.flushWaiters()
  }

  private peerGone(err: Error | undefined): void {
    if (this.ended) {
      this.flushWaiters()
      this.frames.deliver()
      return
    }
    const reason = this.goneError(err ? `connection error: ${err.message}` : 'peer closed the connection', err)
    if (err) this.log?.({ remote: this.remote, err }, `replication connection failed: ${err.message}`)
    this.terminate(reason, reason, false)
    this.frames.deliver()
    this.flushWaiters()
  }

  /** Mark the transport ended with `reason`; optionally send an ERROR frame and end the socket. */
  private terminate(reason: Error, reported: Error | undefined, endSocket: boolean): void {
    this.ended = true
    this.reason = reason
    this.reported = reported
    for (const w of this.drainWaiters.splice(0)) w.reject(reason)
    this.frames.rejectWaiters(reason)
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
    if (this.frames.empty) this.frames.rejectWaiters(this.reason ?? this.goneError('closed'))
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
