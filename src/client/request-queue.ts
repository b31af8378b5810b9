import { Errno } from '../nbd/constants.js'
import { BlockrepError } from '../util/errors.js'
import { systemClock } from './clock.js'
import type { Clock, ClockTimer } from './clock.js'
import { PATH_ERRNOS, errorForErrno, opBytes, opLength, opOffset } from './proxy-ops.js'
import type { ProxyOp, UpstreamReply } from './proxy-ops.js'
import type { ItemState, QueueItemView, QueueLogger, QueuePath, QueueStats, RequestQueueOptions } from './queue-types.js'

export type { QueueItemView, QueueLogger, QueuePath, QueueStats, RequestQueueOptions } from './queue-types.js'

interface Item {
  readonly id: number
  readonly op: ProxyOp
  readonly bytes: number
  readonly enqueuedAt: number
  state: ItemState
  /** the epoch of the path it was first sent to; it is replayed only to a path of this epoch or newer */
  firstEpoch: number | null
  /** times it went back to the queue after a send that did not complete */
  retries: number
  /** increases on every send, so a late reply from an abandoned path is ignored */
  attempt: number
  lastError: string | null
  resolve(data: Buffer | undefined): void
  reject(err: Error): void
}

const noop = (): void => {}
const silent: QueueLogger = { debug: noop, info: noop, warn: noop, error: noop }

/**
 * The proxy's ordered request queue: dm-multipath's queue_if_no_path with
 * no_path_retry N, for one volume.
 *
 * - Requests are sent in the order they were submitted. While no path is
 *   attached they wait, in that order.
 * - When a path is lost (connection closed, a path errno, the configuration
 *   moved), every request sent on it and not yet answered goes back to its
 *   place with its retry count raised, and is replayed in the original order
 *   to the next path — only to one whose epoch is at least the epoch it was
 *   first sent to. A late reply from the abandoned path is ignored, so no
 *   request is answered by a node that is no longer the primary.
 * - A request is answered to the client only with the reply of a path: a
 *   write is never acknowledged before a primary acknowledged it.
 * - Without a working path for noPathRetry × retryIntervalMs the waiting
 *   requests fail with EIO, and new ones fail at once, until a path answers.
 *
 * Write ordering: the NBD session above never has two overlapping
 * mutations of one connection outstanding (`RequestRunner`), and all
 * requests share one upstream connection whose server runs overlapping
 * requests in arrival order, so replaying in submission order keeps every
 * write's order against later writes to the same range.
 */
export class RequestQueue {
  private readonly clock: Clock
  private readonly log: QueueLogger
  private readonly items = new Map<number, Item>()
  private nextId = 1
  private path: QueuePath | null = null
  private newestEpoch = -1
  private waiting = 0
  private bytes = 0
  private over = false
  private downSince: number | null
  private failing = false
  private boundTimer: ClockTimer | null = null
  private counters = { totalRetries: 0, replayed: 0, completed: 0, failedNoPath: 0 }

  constructor(private readonly opts: RequestQueueOptions) {
    if (!(opts.noPathRetry >= 0)) throw new BlockrepError('ERR_USAGE', `noPathRetry must be 0 or more (Infinity: queue forever), got ${opts.noPathRetry}`)
    if (!(opts.retryIntervalMs > 0)) throw new BlockrepError('ERR_USAGE', `retryIntervalMs must be positive, got ${opts.retryIntervalMs}`)
    if (!(opts.maxQueuedBytes > 0)) throw new BlockrepError('ERR_USAGE', `maxQueuedBytes must be positive, got ${opts.maxQueuedBytes}`)
    this.clock = opts.clock ?? systemClock
    this.log = opts.log ?? silent
    // no path yet: the bound runs from the start
    this.downSince = this.clock.now()
  }

  /** How long requests may wait without a path (Infinity: forever). */
  get boundMs(): number {
    return this.opts.noPathRetry * this.opts.retryIntervalMs
  }

  /** True while the bytes held are at or past maxQueuedBytes: the proxy stops reading from its clients. */
  get overLimit(): boolean {
    return this.over
  }

  get currentPath(): QueuePath | null {
    return this.path
  }

  /** The newest epoch of any path attached so far. */
  get epoch(): number {
    return this.newestEpoch
  }

  /** Queue one request; resolves with the data of a read (undefined otherwise) or rejects with an errno-mapped error. */
  submit(op: ProxyOp): Promise<Buffer | undefined> {
    if (this.path === null && this.mustFailNow()) {
      this.counters.failedNoPath++
      return Promise.reject(this.noPathError(op))
    }
    return new Promise((resolve, reject) => {
      const item: Item = {
        id: this.nextId++, op, bytes: opBytes(op), enqueuedAt: this.clock.now(), state: 'queued',
        firstEpoch: null, retries: 0, attempt: 0, lastError: null, resolve, reject,
      }
      this.items.set(item.id, item)
      this.waiting++
      this.addBytes(item.bytes)
      // behind requests still waiting for a path, or for none: keep the order
      if (this.path !== null && this.waiting === 1) this.dispatch()
    })
  }

  /**
   * Use `path` from now on and replay what waits, in order. A path older than
   * one already seen is refused (the proxy talks only to the newest epoch).
   */
  attach(path: QueuePath): void {
    if (path.epoch < this.newestEpoch) {
      throw new BlockrepError('ERR_FENCED', `refusing path ${path.label} of epoch ${path.epoch}: epoch ${this.newestEpoch} is known`,
        { context: { epoch: path.epoch, newest: this.newestEpoch } })
    }
    if (this.path !== null) this.detach(this.path, 'replaced')
    this.newestEpoch = path.epoch
    this.path = path
    // with nothing waiting the path counts as working; with requests waiting
    // the bound keeps running until one is answered (a node that connects but
    // fails every request must not reset it)
    if (this.items.size === 0) this.pathWorks()
    this.log.info({ path: path.label, epoch: path.epoch, waiting: this.waiting }, 'nbd-proxy: path attached')
    this.dispatch()
  }

  /**
   * The path is gone (or must no longer be used): its unanswered requests go
   * back to their places with one more retry, and the no-path bound starts.
   * Does nothing if `path` is not the current one.
   */
  detach(path: QueuePath, reason: string): void {
    if (this.path !== path) return
    this.path = null
    const requeued: Item[] = []
    for (const item of this.items.values()) {
      if (item.state !== 'sent') continue
      item.state = 'queued'
      item.retries++
      item.lastError = reason
      this.waiting++
      this.counters.totalRetries++
      requeued.push(item)
    }
    this.downSince ??= this.clock.now()
    if (this.items.size > 0) {
      this.log.warn({ path: path.label, epoch: path.epoch, reason, requeued: requeued.length, waiting: this.waiting,
        bytes: this.bytes, maxRetries: this.maxRetries(), oldestAgeMs: this.oldestAgeMs(), sample: this.sample(requeued) },
      'nbd-proxy: path lost, requests queued')
    } else {
      this.log.warn({ path: path.label, epoch: path.epoch, reason }, 'nbd-proxy: path lost')
    }
    for (const item of requeued) {
      this.log.debug({ id: item.id, kind: item.op.kind, offset: opOffset(item.op), length: opLength(item.op),
        retries: item.retries, firstEpoch: item.firstEpoch }, 'nbd-proxy: request queued for retry')
    }
    this.checkBound()
  }

  /** Answer every held request with ESHUTDOWN (the proxy is stopping). */
  close(): void {
    this.path = null
    if (this.boundTimer !== null) this.clock.clearTimeout(this.boundTimer)
    this.boundTimer = null
    for (const item of [...this.items.values()]) this.finish(item, new BlockrepError('ERR_SHUTDOWN', 'nbd-proxy is stopping'))
  }

  stats(): QueueStats {
    return {
      items: this.items.size,
      waiting: this.waiting,
      inFlight: this.items.size - this.waiting,
      bytes: this.bytes,
      maxQueuedBytes: this.opts.maxQueuedBytes,
      overLimit: this.over,
      oldestAgeMs: this.oldestAgeMs(),
      maxRetries: this.maxRetries(),
      ...this.counters,
      path: this.path === null ? null : { label: this.path.label, epoch: this.path.epoch },
      noPathForMs: this.downSince === null ? null : this.clock.now() - this.downSince,
      failing: this.failing,
      noPathRetry: this.opts.noPathRetry === Infinity ? 'queue' : this.opts.noPathRetry,
      retryIntervalMs: this.opts.retryIntervalMs,
    }
  }

  /** The oldest `limit` held requests. */
  list(limit = 50): QueueItemView[] {
    const now = this.clock.now()
    const out: QueueItemView[] = []
    for (const item of this.items.values()) {
      if (out.length >= limit) break
      out.push({ id: item.id, kind: item.op.kind, offset: opOffset(item.op), length: opLength(item.op), state: item.state,
        retries: item.retries, firstEpoch: item.firstEpoch, ageMs: now - item.enqueuedAt, lastError: item.lastError })
    }
    return out
  }

  /** Send the waiting requests in order, stopping at one the path may not take (older epoch rule). */
  private dispatch(): void {
    const path = this.path
    if (path === null || this.waiting === 0) return
    let replayed = 0
    for (const item of this.items.values()) {
      if (this.path !== path) return
      if (item.state !== 'queued') continue
      if (item.firstEpoch !== null && path.epoch < item.firstEpoch) {
        // never reached in practice (paths only get newer); keep the order rather than overtake
        this.log.warn({ id: item.id, firstEpoch: item.firstEpoch, path: path.label, epoch: path.epoch },
          'nbd-proxy: request waits for a path of its epoch')
        break
      }
      if (item.retries > 0) replayed++
      this.send(item, path)
    }
    if (replayed > 0) {
      this.counters.replayed += replayed
      this.log.info({ path: path.label, epoch: path.epoch, replayed, inFlight: this.items.size - this.waiting },
        'nbd-proxy: queued requests replayed in order')
    }
  }

  private send(item: Item, path: QueuePath): void {
    item.state = 'sent'
    item.firstEpoch ??= path.epoch
    const attempt = ++item.attempt
    this.waiting--
    let reply: Promise<UpstreamReply>
    try {
      reply = path.send(item.op)
    } catch (err) {
      reply = Promise.reject(err)
    }
    reply.then(
      r => this.onReply(item, attempt, path, r),
      (err: unknown) => this.onLost(item, attempt, path, err),
    )
  }

  private stale(item: Item, attempt: number, path: QueuePath): boolean {
    return this.items.get(item.id) !== item || item.attempt !== attempt || item.state !== 'sent' || this.path !== path
  }

  private onReply(item: Item, attempt: number, path: QueuePath, reply: UpstreamReply): void {
    if (this.stale(item, attempt, path)) return
    if (PATH_ERRNOS.has(reply.errno)) {
      const reason = `${item.op.kind} answered errno ${reply.errno} by ${path.label}`
      this.detach(path, reason)
      this.opts.onPathFailed?.(path, reason)
      return
    }
    // any answer other than a path error shows the path works
    this.pathWorks()
    this.counters.completed++
    if (reply.errno === Errno.OK) this.finish(item, null, reply.data)
    else this.finish(item, errorForErrno(reply.errno, `upstream ${path.label} answered ${item.op.kind} with errno ${reply.errno}`))
  }

  private onLost(item: Item, attempt: number, path: QueuePath, err: unknown): void {
    if (this.stale(item, attempt, path)) return
    const reason = err instanceof Error ? err.message : String(err)
    this.detach(path, reason)
    this.opts.onPathFailed?.(path, reason)
  }

  private pathWorks(): void {
    if (this.downSince === null && !this.failing) return
    if (this.failing) this.log.info({ path: this.path?.label }, 'nbd-proxy: a primary answers again, queueing resumes')
    this.downSince = null
    this.failing = false
    if (this.boundTimer !== null) this.clock.clearTimeout(this.boundTimer)
    this.boundTimer = null
  }

  /** True when a request arriving with no path must fail rather than wait. */
  private mustFailNow(): boolean {
    return this.failing || this.opts.noPathRetry === 0
  }

  /** With no path: fail what waits once the bound has run out, else arm a timer for when it does. */
  private checkBound(): void {
    if (this.path !== null || this.downSince === null || this.opts.noPathRetry === Infinity) return
    const left = this.downSince + this.boundMs - this.clock.now()
    if (left <= 0 || this.opts.noPathRetry === 0) {
      this.failAll()
      return
    }
    if (this.boundTimer !== null) return
    this.boundTimer = this.clock.setTimeout(() => {
      this.boundTimer = null
      this.checkBound()
    }, left)
  }

  private failAll(): void {
    if (!this.failing) {
      this.log.error({ waitedMs: this.downSince === null ? null : this.clock.now() - this.downSince, noPathRetry: this.opts.noPathRetry,
        retryIntervalMs: this.opts.retryIntervalMs, failing: this.waiting }, 'nbd-proxy: no primary within the bound, failing queued requests with EIO')
    }
    this.failing = true
    for (const item of [...this.items.values()]) {
      if (item.state !== 'queued') continue
      this.counters.failedNoPath++
      this.finish(item, this.noPathError(item.op, item.retries))
    }
  }

  private noPathError(op: ProxyOp, retries = 0): BlockrepError {
    return new BlockrepError('ERR_NO_PRIMARY', `no primary reachable for ${this.boundMs} ms: ${op.kind} failed after ${retries} retries`,
      { context: { errno: Errno.EIO, retries } })
  }

  private finish(item: Item, err: Error | null, data?: Buffer): void {
    if (this.items.get(item.id) !== item) return
    this.items.delete(item.id)
    if (item.state === 'queued') this.waiting--
    this.addBytes(-item.bytes)
    if (err !== null) item.reject(err)
    else item.resolve(data)
  }

  private addBytes(n: number): void {
    this.bytes += n
    const over = this.bytes >= this.opts.maxQueuedBytes
    if (over !== this.over) {
      this.over = over
      this.log.info({ bytes: this.bytes, maxQueuedBytes: this.opts.maxQueuedBytes, over }, over
        ? 'nbd-proxy: queued bytes at the limit, not reading from clients'
        : 'nbd-proxy: queued bytes under the limit, reading again')
      this.opts.onPressure?.(over)
    }
  }

  private oldestAgeMs(): number | null {
    for (const item of this.items.values()) return this.clock.now() - item.enqueuedAt
    return null
  }

  private maxRetries(): number {
    let m = 0
    for (const item of this.items.values()) if (item.retries > m) m = item.retries
    return m
  }

  private sample(items: Item[]): object[] {
    return items.slice(0, 8).map(i => ({ id: i.id, kind: i.op.kind, offset: opOffset(i.op), length: opLength(i.op), retries: i.retries }))
  }
}
