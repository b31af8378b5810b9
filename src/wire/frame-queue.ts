import { BlockrepError, ErrorCode } from '../util/errors.js'
import type { Frame } from './messages.js'

/** Called for each frame in push mode. A throw closes the transport with that error. */
export type FrameHandler = (frame: Frame) => void
/** Called once when the transport ends: undefined after a plain local `close()`, else the reason. */
export type CloseHandler = (err: Error | undefined) => void

/** What the queue needs from the connection it serves. */
export interface FrameQueueHost {
  /** `host:port` of the peer, for error messages. */
  readonly remote: string
  /** Received bytes waiting undelivered past which reading stops (it restarts at half). */
  readonly maxQueuedBytes: number
  /** True once the connection has ended. */
  isEnded(): boolean
  /** The error for `op` attempted after the end: the close reason. */
  gone(op: string): Error
  /** What `onClose` gets: undefined after a plain local close, else the reason. */
  closeReport(): Error | undefined
  /** Stop (false) or restart (true) reading from the socket. */
  setReading(on: boolean): void
  /** The push-mode handler threw while the connection was open: end it with `err`. */
  handlerThrew(err: Error): void
}

interface Waiter {
  resolve: (f: Frame) => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout | undefined
}

/**
 * Received frames on their way to the consumer: handed to pending `next()`
 * calls (pull mode) or to the handler (push mode), with reading from the
 * socket stopped while too many bytes wait or the consumer has paused.
 * Knows nothing of sockets; the host says when the connection has ended.
 */
export class FrameQueue {
  private queue: Frame[] = []
  private queueHead = 0
  private queuedBytes = 0
  private readPaused = false
  private waiters: Waiter[] = []
  private handler: FrameHandler | undefined
  private onCloseHandler: CloseHandler | undefined
  private consumerPaused = false
  private delivering = false
  private closeNotified = false

  constructor(private readonly host: FrameQueueHost) {}

  /** True when every received frame has been handed out. */
  get empty(): boolean {
    return this.queueHead === this.queue.length
  }

  /** The next frame (pull mode); see `FrameTransport.next`. */
  next(timeoutMs?: number): Promise<Frame> {
    if (this.handler) {
      return Promise.reject(new BlockrepError(ErrorCode.PROTOCOL, 'next() called on a transport in push mode', { context: { remote: this.host.remote } }))
    }
    const frame = this.shift()
    if (frame) return Promise.resolve(frame)
    if (this.host.isEnded()) return Promise.reject(this.host.gone('next'))
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined }
      if (timeoutMs !== undefined) {
        waiter.timer = setTimeout(() => {
          this.waiters = this.waiters.filter(w => w !== waiter)
          reject(new BlockrepError(ErrorCode.TIMEOUT, `no frame from ${this.host.remote} within ${timeoutMs} ms`, { context: { remote: this.host.remote, timeoutMs } }))
        }, timeoutMs)
      }
      this.waiters.push(waiter)
    })
  }

  /** Switch to push mode; see `FrameTransport.setHandler`. */
  setHandler(onFrame: FrameHandler, onClose?: CloseHandler): void {
    if (this.handler) throw new BlockrepError(ErrorCode.PROTOCOL, 'setHandler called twice', { context: { remote: this.host.remote } })
    if (this.waiters.length > 0) throw new BlockrepError(ErrorCode.PROTOCOL, 'setHandler called while next() is pending', { context: { remote: this.host.remote } })
    this.handler = onFrame
    this.onCloseHandler = onClose
    queueMicrotask(() => this.deliver())
  }

  /** Push mode: stop delivering frames and reading from the socket. */
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

  /** A decoded frame: straight to a waiting `next()` when nothing is queued ahead of it, else queued. */
  push(frame: Frame): void {
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

  /** Forget the frames not yet delivered. */
  drop(): void {
    this.queue = []
    this.queueHead = 0
    this.queuedBytes = 0
  }

  /** Reject every pending `next()` with `reason`. */
  rejectWaiters(reason: Error): void {
    for (const w of this.waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer)
      w.reject(reason)
    }
  }

  /** Push mode: hand queued frames to the handler; report the end once they are all out. */
  deliver(): void {
    if (!this.handler || this.delivering) return
    this.delivering = true
    try {
      while (!this.consumerPaused && this.handler) {
        const frame = this.shift()
        if (!frame) break
        try {
          this.handler(frame)
        } catch (err) {
          if (!this.host.isEnded()) {
            this.host.handlerThrew(err as Error)
            this.drop()
          }
          break
        }
      }
    } finally {
      this.delivering = false
    }
    if (this.host.isEnded() && this.queueHead === this.queue.length) this.notifyClose()
  }

  /** Run `onClose` (once, from a microtask) with the host's close report. */
  notifyClose(): void {
    const cb = this.onCloseHandler
    if (this.closeNotified || !cb) return
    this.closeNotified = true
    queueMicrotask(() => cb(this.host.closeReport()))
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

  private updateReading(): void {
    const max = this.host.maxQueuedBytes
    const stop = this.consumerPaused || this.queuedBytes > max
    if (stop && !this.readPaused) {
      this.readPaused = true
      this.host.setReading(false)
    } else if (!stop && this.readPaused && this.queuedBytes <= max / 2) {
      this.readPaused = false
      this.host.setReading(true)
    }
  }
}
