import { NbdServer } from '../nbd/server.js'
import type { NbdStats } from '../nbd/session.js'
import { BlockrepError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import type { CenterClient, WatchHandle } from './center-client.js'
import { systemClock } from './clock.js'
import type { Clock, ClockTimer } from './clock.js'
import { ProxyEngine } from './proxy-engine.js'
import { RequestQueue } from './request-queue.js'
import type { QueueItemView, QueuePath, QueueStats } from './request-queue.js'
import { UpstreamPath } from './upstream.js'
import type { UpstreamTarget } from './upstream.js'
import type { VolumeDocument } from './volume-document.js'

export interface NbdProxyOptions {
  center: CenterClient
  listen: { host: string; port: number }
  /** retry intervals without a primary before queued requests fail with EIO; 0: at once; Infinity: queue forever */
  noPathRetry: number
  retryIntervalMs: number
  maxQueuedBytes: number
  /** connect + NBD handshake bound for an upstream; default 3 s */
  connectTimeoutMs?: number
  /** block size advertised to clients; default 4096 */
  blockSize?: number
  log: Logger
  clock?: Clock
}

/** What `GET /status` of the proxy shows. */
export interface ProxyStatus {
  volume: string
  listen: string | null
  center: { urls: readonly string[]; current: string; epoch: number | null; revision: number | null }
  /** the primary the proxy follows, and whether it is connected */
  upstream: { node: string; nbd: string; epoch: number; connected: boolean } | null
  /** the newest epoch the proxy knows */
  epoch: number | null
  reconnect: { attempts: number; failures: number; attemptsSinceLoss: number; pathLosses: number }
  queue: QueueStats
  items: QueueItemView[]
  nbd: NbdStats | null
}

/**
 * `blockrep nbd-proxy`: a local NBD export that follows the configuration
 * center and forwards every request to the current primary through the
 * ordered request queue, so NBD clients ride through a failover.
 */
export class NbdProxy {
  readonly queue: RequestQueue
  private readonly log: Logger
  private readonly clock: Clock
  private readonly connectTimeoutMs: number
  private watch: WatchHandle | null = null
  private server: NbdServer | null = null
  private port: number | null = null
  private doc: VolumeDocument | null = null
  private target: UpstreamTarget | null = null
  private path: UpstreamPath | null = null
  private connecting = false
  private reconnectTimer: ClockTimer | null = null
  private closed = false
  private size: number | null = null
  private readonly pressureListeners: (() => void)[] = []
  private readonly counters = { attempts: 0, failures: 0, attemptsSinceLoss: 0, pathLosses: 0 }
  private firstPath!: { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void }

  constructor(private readonly opts: NbdProxyOptions) {
    this.log = opts.log.child({ volume: opts.center.volume })
    this.clock = opts.clock ?? systemClock
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 3000
    this.queue = new RequestQueue({
      noPathRetry: opts.noPathRetry,
      retryIntervalMs: opts.retryIntervalMs,
      maxQueuedBytes: opts.maxQueuedBytes,
      clock: this.clock,
      log: this.log,
      onPathFailed: (path, reason) => this.onPathFailed(path, reason),
      onPressure: () => {
        for (const fn of this.pressureListeners) fn()
      },
    })
    let resolve!: () => void
    let reject!: (e: Error) => void
    const promise = new Promise<void>((res, rej) => {
      resolve = res
      reject = rej
    })
    promise.catch(() => {})
    this.firstPath = { promise, resolve, reject }
  }

  get volume(): string {
    return this.opts.center.volume
  }

  /**
   * Follow the center, wait for a first primary (its export gives the size
   * the proxy serves), then listen. Resolves with the bound port.
   */
  async start(): Promise<{ port: number }> {
    this.log.info({ centers: this.opts.center.urls, noPathRetry: this.opts.noPathRetry,
      retryIntervalMs: this.opts.retryIntervalMs, maxQueuedBytes: this.opts.maxQueuedBytes }, 'nbd-proxy: starting, waiting for a primary')
    this.watch = this.opts.center.watch(doc => this.onDocument(doc))
    await this.firstPath.promise
    const size = this.size as number
    this.server = new NbdServer({
      engine: new ProxyEngine(this.volume, size, this.opts.blockSize ?? 4096, this.queue),
      log: this.log,
      limits: { maxBytesInFlight: this.opts.maxQueuedBytes },
      readGate: { isOpen: () => !this.queue.overLimit, onChange: fn => this.pressureListeners.push(fn) },
    })
    const { port } = await this.server.listen(this.opts.listen.port, this.opts.listen.host)
    this.port = port
    this.log.info({ host: this.opts.listen.host, port, size }, 'nbd-proxy: serving')
    return { port }
  }

  /** Stop: clients' outstanding requests get ESHUTDOWN, connections close. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.firstPath.reject(new BlockrepError('ERR_SHUTDOWN', 'nbd-proxy stopped before a primary was found'))
    if (this.reconnectTimer !== null) this.clock.clearTimeout(this.reconnectTimer)
    await this.watch?.stop()
    this.queue.close()
    this.path?.close()
    await this.server?.close()
  }

  status(): ProxyStatus {
    const t = this.target
    return {
      volume: this.volume,
      listen: this.port === null ? null : `${this.opts.listen.host}:${this.port}`,
      center: { urls: this.opts.center.urls, current: this.opts.center.currentUrl, epoch: this.doc?.epoch ?? null, revision: this.doc?.revision ?? null },
      upstream: t === null ? null : { node: t.node, nbd: t.nbd, epoch: t.epoch, connected: this.path !== null && this.path.target === t },
      epoch: this.doc?.epoch ?? null,
      reconnect: { ...this.counters },
      queue: this.queue.stats(),
      items: this.queue.list(50),
      nbd: this.server?.stats() ?? null,
    }
  }

  private onDocument(doc: VolumeDocument): void {
    this.doc = doc
    const p = doc.primary
    const next: UpstreamTarget | null = p === null ? null : { node: p.node, nbd: p.nbd, epoch: doc.epoch }
    const cur = this.target
    if (cur !== null && next !== null && cur.node === next.node && cur.nbd === next.nbd && cur.epoch === next.epoch) return
    this.target = next
    if (next === null) this.log.warn({ epoch: doc.epoch, revision: doc.revision }, 'nbd-proxy: the center names no primary')
    else this.log.info({ epoch: next.epoch, node: next.node, nbd: next.nbd }, 'nbd-proxy: following the primary')
    const path = this.path
    if (path !== null) {
      // requests go only to the newest epoch: leave the old path before anything more is sent on it
      this.path = null
      this.queue.detach(path, next === null ? `epoch ${doc.epoch} names no primary` : `configuration moved to ${next.node} in epoch ${next.epoch}`)
      path.close()
    }
    this.connectSoon(0)
  }

  private onPathFailed(path: QueuePath, reason: string): void {
    const current = this.path
    if (current === null || current !== path) return
    this.log.warn({ path: path.label, reason }, 'nbd-proxy: the primary refused a request, reconnecting')
    this.path = null
    this.counters.pathLosses++
    this.counters.attemptsSinceLoss = 0
    current.close()
    this.connectSoon(this.opts.retryIntervalMs)
  }

  private onPathClosed(path: UpstreamPath, err: Error): void {
    if (this.path !== path) return
    this.path = null
    this.counters.pathLosses++
    this.counters.attemptsSinceLoss = 0
    this.queue.detach(path, `connection to ${path.label} lost: ${err.message}`)
    this.connectSoon(0)
  }

  private connectSoon(delayMs: number): void {
    if (this.closed) return
    if (this.reconnectTimer !== null) this.clock.clearTimeout(this.reconnectTimer)
    this.reconnectTimer = this.clock.setTimeout(() => {
      this.reconnectTimer = null
      void this.connect()
    }, delayMs)
  }

  private async connect(): Promise<void> {
    if (this.closed || this.connecting || this.path !== null) return
    const target = this.target
    if (target === null) return
    this.connecting = true
    this.counters.attempts++
    this.counters.attemptsSinceLoss++
    try {
      const path = await UpstreamPath.open(target, { timeoutMs: this.connectTimeoutMs })
      if (this.closed || this.target !== target) {
        path.close()
        return
      }
      if (path.readOnly) {
        path.close()
        throw new BlockrepError('ERR_READ_ONLY', `${path.label} exports the volume read-only: not a primary`)
      }
      if (this.size !== null && path.size !== this.size) {
        path.close()
        throw new BlockrepError('ERR_VOLUME_SIZE', `${path.label} exports ${path.size} bytes, the proxy serves ${this.size}`)
      }
      this.log.info({ path: path.label, epoch: target.epoch, attempt: this.counters.attemptsSinceLoss, waiting: this.queue.stats().waiting },
        'nbd-proxy: connected to the primary')
      try {
        this.queue.attach(path)
      } catch (err) {
        path.close()
        throw err
      }
      this.size ??= path.size
      this.path = path
      this.counters.attemptsSinceLoss = 0
      path.onClose(err => this.onPathClosed(path, err))
      this.firstPath.resolve()
    } catch (err) {
      this.counters.failures++
      const q = this.queue.stats()
      this.log.warn({ node: target.node, nbd: target.nbd, epoch: target.epoch, attempt: this.counters.attemptsSinceLoss,
        err: err instanceof Error ? err.message : String(err), waiting: q.waiting, maxRetries: q.maxRetries, oldestAgeMs: q.oldestAgeMs,
        retryInMs: this.opts.retryIntervalMs }, 'nbd-proxy: cannot reach the primary, retrying')
    } finally {
      this.connecting = false
      // (in finally: the early return above must reschedule too) a target that
      // changed during the attempt is tried at once, a failed one after the interval
      if (this.path === null && !this.closed) this.connectSoon(this.target !== target ? 0 : this.opts.retryIntervalMs)
    }
  }
}
