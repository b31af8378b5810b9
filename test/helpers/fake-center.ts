import http from 'node:http'
import type { AddressInfo } from 'node:net'

/** A volume document as docs/control-plane.md section 2 defines it. */
export interface CenterDocument {
  volume: string
  epoch: number
  revision: number
  primary: { node: string; nbd: string; admin?: string; site?: string } | null
  standbys: { node: string; nbd: string; site?: string; consistent?: boolean; ackedSeq?: number; available?: boolean }[]
  updatedAt: number
}

interface Waiter {
  ready: (doc: CenterDocument) => boolean
  answer: (doc: CenterDocument) => void
}

/**
 * A small real configuration center for the client tests: a `node:http`
 * server implementing the documented API (GET /v1/volumes/NAME with
 * ?after=EPOCH and ?since=REVISION long-polls and timeoutMs, /events as
 * SSE, GET /v1/volumes), with documents the test changes. The real
 * controller serves the same API, so the client code does not know which
 * one it talks to.
 */
export class FakeCenter {
  readonly docs = new Map<string, CenterDocument>()
  /** every request, "METHOD path?query", for assertions */
  readonly requests: string[] = []
  private readonly waiters = new Map<string, Set<Waiter>>()
  private readonly streams = new Map<string, Set<http.ServerResponse>>()
  private server: http.Server
  port = 0
  /** when set, every request answers this status (a broken center) */
  failWith: number | null = null

  constructor() {
    this.server = http.createServer((req, res) => this.handle(req, res))
  }

  static async start(t?: { teardown(fn: () => unknown): void }, port = 0): Promise<FakeCenter> {
    const c = new FakeCenter()
    await c.listen(port)
    t?.teardown(() => c.close())
    return c
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  async listen(port = this.port): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res))
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, '127.0.0.1', () => resolve())
    })
    this.port = (this.server.address() as AddressInfo).port
  }

  /** Stop serving (connections dropped, long-polls cut); `listen()` again on the same port to come back. */
  async close(): Promise<void> {
    for (const set of this.streams.values()) for (const res of set) res.destroy()
    this.streams.clear()
    for (const set of this.waiters.values()) set.clear()
    this.server.closeAllConnections()
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }

  /**
   * Create or change a volume's document: revision + 1, epoch as given (or
   * kept), then answer every long-poll and stream that waits for it.
   */
  set(volume: string, change: Partial<Omit<CenterDocument, 'volume' | 'revision' | 'updatedAt'>>): CenterDocument {
    const prev = this.docs.get(volume)
    const doc: CenterDocument = {
      volume,
      epoch: change.epoch ?? prev?.epoch ?? 1,
      revision: (prev?.revision ?? 0) + 1,
      primary: change.primary !== undefined ? change.primary : (prev?.primary ?? null),
      standbys: change.standbys ?? prev?.standbys ?? [],
      updatedAt: Date.now(),
    }
    this.publish(doc)
    return doc
  }

  /** Serve exactly this document (a stale or odd one included), answering waiters as a change. */
  publish(doc: CenterDocument): void {
    this.docs.set(doc.volume, doc)
    for (const w of [...(this.waiters.get(doc.volume) ?? [])]) {
      if (w.ready(doc)) w.answer(doc)
    }
    for (const res of this.streams.get(doc.volume) ?? []) res.write(`event: volume\nid: ${doc.revision}\ndata: ${JSON.stringify(doc)}\n\n`)
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests.push(`${req.method} ${req.url}`)
    const url = new URL(req.url ?? '/', 'http://x')
    if (this.failWith !== null) return json(res, this.failWith, { code: 'ERR_STORE_UNAVAILABLE', message: 'injected failure' })
    if (req.method !== 'GET') return json(res, 405, { code: 'ERR_USAGE', message: 'GET only' })
    if (url.pathname === '/v1/volumes') return json(res, 200, { volumes: [...this.docs.values()] })
    const m = /^\/v1\/volumes\/([^/]+)(\/events)?$/.exec(url.pathname)
    if (m === null) return json(res, 404, { code: 'ERR_USAGE', message: `no route ${url.pathname}` })
    const name = decodeURIComponent(m[1] as string)
    const doc = this.docs.get(name)
    if (doc === undefined) return json(res, 404, { code: 'ERR_CONFIG', message: `unknown volume ${name}` })
    if (m[2] !== undefined) return this.stream(name, doc, res)
    const after = url.searchParams.get('after')
    const since = url.searchParams.get('since')
    if (after === null && since === null) return json(res, 200, doc)
    const ready = after !== null ? (d: CenterDocument) => d.epoch > Number(after) : (d: CenterDocument) => d.revision > Number(since)
    if (ready(doc)) return json(res, 200, doc)
    const timeoutMs = Number(url.searchParams.get('timeoutMs') ?? 30_000)
    const set = this.waiters.get(name) ?? new Set<Waiter>()
    this.waiters.set(name, set)
    const w: Waiter = {
      ready,
      answer: d => {
        set.delete(w)
        clearTimeout(timer)
        json(res, 200, d)
      },
    }
    const timer = setTimeout(() => w.answer(this.docs.get(name) as CenterDocument), timeoutMs)
    set.add(w)
    res.on('close', () => {
      clearTimeout(timer)
      set.delete(w)
    })
  }

  private stream(name: string, doc: CenterDocument, res: http.ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    res.write(`event: volume\nid: ${doc.revision}\ndata: ${JSON.stringify(doc)}\n\n`)
    const set = this.streams.get(name) ?? new Set()
    this.streams.set(name, set)
    set.add(res)
    res.on('close', () => set.delete(res))
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}
