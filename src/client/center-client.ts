import { BlockrepError, ErrorCode } from '../util/errors.js'
import { systemClock } from './clock.js'
import type { Clock } from './clock.js'
import { readSse } from './sse.js'
import { isNewer, parseVolumeDocument } from './volume-document.js'
import type { VolumeDocument } from './volume-document.js'

/** pino-compatible subset. */
export interface CenterLogger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
}

export interface CenterClientOptions {
  /** base URLs of the configuration center (every controller serves it), tried in turn: `http://host:port` or `host:port` */
  urls: readonly string[]
  volume: string
  /** how long the center may hold a long-poll (its `timeoutMs`); default 30 s */
  pollTimeoutMs?: number
  /** added to every request's own bound (a plain GET, or a long-poll on top of pollTimeoutMs); default 5 s */
  requestTimeoutMs?: number
  /** reconnect backoff after a failure, doubling up to the maximum; defaults 100 ms and 5 s */
  minBackoffMs?: number
  maxBackoffMs?: number
  /** `poll` (long-poll with ?since=revision, the default) or `sse` (GET …/events) */
  transport?: 'poll' | 'sse'
  log?: CenterLogger
  clock?: Clock
}

/** Called for every change, in order: a newer epoch, or a newer revision of the same epoch. */
export type ChangeListener = (doc: VolumeDocument, previous: VolumeDocument | null) => void

/** A running watch. */
export interface WatchHandle {
  /** the newest document delivered so far */
  readonly current: VolumeDocument | null
  /** stop watching; resolves once the loop has ended */
  stop(): Promise<void>
}

const noop = (): void => {}
const silent: CenterLogger = { debug: noop, info: noop, warn: noop }

/** "host:port" → "http://host:port"; trailing slashes dropped. */
export function normaliseCenterUrl(url: string): string {
  const u = /^[a-z]+:\/\//i.test(url) ? url : `http://${url}`
  try {
    new URL(u)
  } catch {
    throw new BlockrepError('ERR_USAGE', `center URL ${JSON.stringify(url)} is not a URL or HOST:PORT`, { context: { url } })
  }
  return u.replace(/\/+$/, '')
}

/**
 * The configuration-center client (docs/control-plane.md section 2): reads
 * and follows one volume's document. Several center URLs are tried in turn;
 * a failed request moves to the next one after a backoff. Documents with a
 * lower epoch than one already seen are stale and never delivered; every
 * newer document is delivered once, in order.
 */
export class CenterClient {
  readonly urls: readonly string[]
  readonly volume: string
  private readonly pollTimeoutMs: number
  private readonly requestTimeoutMs: number
  private readonly minBackoffMs: number
  private readonly maxBackoffMs: number
  private readonly transport: 'poll' | 'sse'
  private readonly log: CenterLogger
  private readonly clock: Clock
  /** the URL to try first: the last one that answered */
  private index = 0

  constructor(opts: CenterClientOptions) {
    if (opts.urls.length === 0) throw new BlockrepError('ERR_USAGE', 'at least one configuration center URL is needed')
    if (opts.volume === '') throw new BlockrepError('ERR_USAGE', 'volume name is empty')
    this.urls = opts.urls.map(normaliseCenterUrl)
    this.volume = opts.volume
    this.pollTimeoutMs = opts.pollTimeoutMs ?? 30_000
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 5_000
    this.minBackoffMs = opts.minBackoffMs ?? 100
    this.maxBackoffMs = Math.max(opts.maxBackoffMs ?? 5_000, this.minBackoffMs)
    this.transport = opts.transport ?? 'poll'
    this.log = opts.log ?? silent
    this.clock = opts.clock ?? systemClock
  }

  /** The URL requests go to first (the last one that answered). */
  get currentUrl(): string {
    return this.urls[this.index] as string
  }

  private get path(): string {
    return `/v1/volumes/${encodeURIComponent(this.volume)}`
  }

  /**
   * The volume's document from the first center that answers. Throws
   * ERR_CONFIG when every center answered that it does not know the volume,
   * ERR_CENTER_UNAVAILABLE when none answered.
   */
  async get(signal?: AbortSignal): Promise<VolumeDocument> {
    const errors: BlockrepError[] = []
    for (let i = 0; i < this.urls.length; i++) {
      const index = (this.index + i) % this.urls.length
      try {
        const doc = await this.fetchDocument(this.urls[index] as string, this.path, this.requestTimeoutMs, signal)
        this.index = index
        return doc
      } catch (err) {
        if (signal?.aborted === true) throw err
        errors.push(asCenterError(err, this.urls[index] as string))
      }
    }
    if (errors.every(e => e.code === ErrorCode.CONFIG)) throw errors[0] as BlockrepError
    throw new BlockrepError('ERR_CENTER_UNAVAILABLE', `no configuration center answered for volume ${this.volume}: ${errors.map(e => e.message).join('; ')}`,
      { context: { urls: this.urls }, cause: errors[0] })
  }

  /**
   * Follow the document: `listener` gets the current document first, then
   * every change in order, until `stop()`. Failures never end the watch: it
   * moves to the next center and retries with backoff.
   */
  watch(listener: ChangeListener): WatchHandle {
    const abort = new AbortController()
    let current: VolumeDocument | null = null
    const deliver = (doc: VolumeDocument): boolean => {
      if (current !== null && doc.epoch < current.epoch) {
        this.log.warn({ volume: this.volume, epoch: doc.epoch, revision: doc.revision, seenEpoch: current.epoch, url: this.currentUrl },
          'center: ignoring a document of an older epoch')
        return false
      }
      if (!isNewer(doc, current)) return true
      const previous = current
      current = doc
      this.log.info({ volume: this.volume, epoch: doc.epoch, revision: doc.revision, primary: doc.primary }, 'center: volume document')
      try {
        listener(doc, previous)
      } catch (err) {
        // the listener's failure is not the center's: keep watching
        this.log.warn({ err }, 'center: change listener threw')
      }
      return true
    }
    const done = this.loop(deliver, () => current, abort.signal).catch(err => {
      if (!abort.signal.aborted) this.log.warn({ err }, 'center: watch ended')
    })
    return {
      get current() {
        return current
      },
      stop: async () => {
        abort.abort()
        await done
      },
    }
  }

  /** The changes as an async iterable (every change, in order), ending when `signal` aborts. */
  async *changes(signal: AbortSignal): AsyncGenerator<VolumeDocument> {
    const buffered: VolumeDocument[] = []
    let wake: (() => void) | null = null
    const handle = this.watch(doc => {
      buffered.push(doc)
      wake?.()
    })
    const onAbort = (): void => wake?.()
    signal.addEventListener('abort', onAbort)
    try {
      while (!signal.aborted) {
        const doc = buffered.shift()
        if (doc !== undefined) {
          yield doc
          continue
        }
        await new Promise<void>(resolve => {
          wake = resolve
        })
        wake = null
      }
    } finally {
      signal.removeEventListener('abort', onAbort)
      await handle.stop()
    }
  }

  private async loop(deliver: (doc: VolumeDocument) => boolean, current: () => VolumeDocument | null, signal: AbortSignal): Promise<void> {
    let backoff = this.minBackoffMs
    let failures = 0
    while (!signal.aborted) {
      const url = this.currentUrl
      try {
        const fresh = this.transport === 'sse'
          ? await this.followSse(url, deliver, signal)
          : await this.pollOnce(url, deliver, current(), signal)
        if (failures > 0) this.log.info({ url, failures }, 'center: reachable again')
        failures = 0
        backoff = this.minBackoffMs
        // an answer that was neither news nor a full wait: don't spin on a center that ignores ?since
        if (!fresh) await this.sleep(this.minBackoffMs, signal)
      } catch (err) {
        if (signal.aborted) return
        failures++
        const e = asCenterError(err, url)
        const next = (this.index + 1) % this.urls.length
        this.log.warn({ url, code: e.code, err: e.message, failures, retryInMs: backoff, next: this.urls[next] }, 'center: request failed, trying the next center')
        this.index = next
        await this.sleep(backoff, signal)
        backoff = Math.min(backoff * 2, this.maxBackoffMs)
      }
    }
  }

  /** One long-poll; true when it delivered news or waited the full poll. */
  private async pollOnce(url: string, deliver: (doc: VolumeDocument) => boolean, seen: VolumeDocument | null, signal: AbortSignal): Promise<boolean> {
    const started = this.clock.now()
    const path = seen === null ? this.path : `${this.path}?since=${seen.revision}&timeoutMs=${this.pollTimeoutMs}`
    const timeout = seen === null ? this.requestTimeoutMs : this.pollTimeoutMs + this.requestTimeoutMs
    const doc = await this.fetchDocument(url, path, timeout, signal)
    if (!deliver(doc)) {
      // a center behind the others: go elsewhere
      throw new BlockrepError('ERR_CENTER_UNAVAILABLE', `${url} serves epoch ${doc.epoch}, older than one already seen`)
    }
    return isNewer(doc, seen) || this.clock.now() - started >= this.pollTimeoutMs / 2
  }

  /** Follow the SSE stream until it ends; the current document is fetched once the stream is open. */
  private async followSse(url: string, deliver: (doc: VolumeDocument) => boolean, signal: AbortSignal): Promise<boolean> {
    const idle = new AbortController()
    const both = AbortSignal.any([signal, idle.signal])
    let timer = this.clock.setTimeout(() => idle.abort(), this.requestTimeoutMs)
    const res = await fetch(`${url}${this.path}/events`, { signal: both, headers: { accept: 'text/event-stream' } })
    if (!res.ok || res.body === null) throw await httpError(res, url, this.volume)
    const doc = await this.fetchDocument(url, this.path, this.requestTimeoutMs, signal)
    if (!deliver(doc)) throw new BlockrepError('ERR_CENTER_UNAVAILABLE', `${url} serves epoch ${doc.epoch}, older than one already seen`)
    const idleMs = this.pollTimeoutMs + this.requestTimeoutMs
    for await (const ev of readSse(res.body)) {
      this.clock.clearTimeout(timer)
      timer = this.clock.setTimeout(() => idle.abort(), idleMs)
      if (ev.event !== 'volume' && ev.event !== 'message') continue
      const next = parseVolumeDocument(parseJson(ev.data, url), this.volume)
      if (!deliver(next)) throw new BlockrepError('ERR_CENTER_UNAVAILABLE', `${url} sent epoch ${next.epoch}, older than one already seen`)
    }
    this.clock.clearTimeout(timer)
    if (idle.signal.aborted) throw new BlockrepError('ERR_TIMEOUT', `${url}: event stream silent for ${idleMs} ms`)
    throw new BlockrepError('ERR_CENTER_UNAVAILABLE', `${url}: event stream ended`)
  }

  private async fetchDocument(url: string, path: string, timeoutMs: number, signal?: AbortSignal): Promise<VolumeDocument> {
    const timeout = AbortSignal.timeout(timeoutMs)
    const res = await fetch(`${url}${path}`, {
      signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
      headers: { accept: 'application/json' },
    })
    if (!res.ok) throw await httpError(res, url, this.volume)
    return parseVolumeDocument(parseJson(await res.text(), url), this.volume)
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise(resolve => {
      if (signal.aborted) return resolve()
      const done = (): void => {
        this.clock.clearTimeout(timer)
        signal.removeEventListener('abort', done)
        resolve()
      }
      const timer = this.clock.setTimeout(done, ms)
      signal.addEventListener('abort', done)
    })
  }
}

function parseJson(text: string, url: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw new BlockrepError('ERR_PROTOCOL', `${url}: the configuration center sent something that is not JSON`, { context: { url } })
  }
}

async function httpError(res: Response, url: string, volume: string): Promise<BlockrepError> {
  const body = await res.text().catch(() => '')
  if (res.status === 404) {
    return new BlockrepError('ERR_CONFIG', `${url}: the configuration center does not know volume ${volume}`, { context: { url, volume } })
  }
  return new BlockrepError('ERR_CENTER_UNAVAILABLE', `${url}: HTTP ${res.status} ${body.slice(0, 200)}`, { context: { url, status: res.status } })
}

function asCenterError(err: unknown, url: string): BlockrepError {
  if (err instanceof BlockrepError) return err
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } }
  const why = e.name === 'TimeoutError' ? 'timed out' : (e.cause?.code ?? e.cause?.message ?? e.message ?? String(err))
  return new BlockrepError('ERR_CENTER_UNAVAILABLE', `${url}: ${why}`, { context: { url }, cause: err })
}
