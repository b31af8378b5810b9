import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { BlockrepError } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import type { Controller } from './controller.js'
import { controllerStatus } from './status.js'
import type { VolumeDoc } from './store.js'

/**
 * The configuration center and the controller's API (docs/control-plane.md §2):
 *
 *   GET  /v1/volumes                          { volumes: [doc] }
 *   GET  /v1/volumes/NAME[?after=N|?since=R][&timeoutMs=T]   doc (long-poll)
 *   GET  /v1/volumes/NAME/events[?since=R]    SSE, one `event: volume` per change
 *   GET  /v1/alarms                           { active, history }
 *   GET  /v1/status                           the whole picture
 *   POST /v1/volumes/NAME/switchover {to}     planned switchover (Bearer adminToken)
 *
 * Errors are `{"error": {"code", "message"}}` as on the agent's admin API.
 */
export class CenterServer {
  private server: Server | null = null
  private readonly tokenHash: Buffer | null
  private readonly streams = new Set<ServerResponse>()

  constructor(
    private readonly ctl: Controller,
    private readonly log: Logger,
    token: string | null,
  ) {
    this.tokenHash = token === null || token === '' ? null : sha256(token)
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch(err => this.sendError(res, err))
    })
    server.headersTimeout = 10_000
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    }).catch(err => {
      throw new BlockrepError('ERR_IO', `controller API cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err })
    })
    const a = server.address() as AddressInfo
    return { host: a.address, port: a.port }
  }

  async close(): Promise<void> {
    const s = this.server
    if (s === null) return
    this.server = null
    for (const r of this.streams) r.end()
    await new Promise<void>(resolve => {
      s.close(() => resolve())
      s.closeAllConnections()
    })
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://center')
    const method = req.method ?? 'GET'
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent)
    if (parts[0] !== 'v1') throw httpError(404, 'ERR_USAGE', `no such endpoint: ${method} ${url.pathname}`)
    const store = this.ctl.store
    if (method === 'GET' && parts.length === 2 && parts[1] === 'volumes') {
      return sendJson(res, 200, { volumes: (await store.listVolumes()).map(v => v.value) })
    }
    if (method === 'GET' && parts.length === 2 && parts[1] === 'alarms') {
      return sendJson(res, 200, { active: this.ctl.alarms.active(), history: this.ctl.alarms.history() })
    }
    if (method === 'GET' && parts.length === 2 && parts[1] === 'status') {
      return sendJson(res, 200, await controllerStatus(this.ctl))
    }
    if (parts[1] === 'volumes' && parts.length >= 3) {
      const name = parts[2] as string
      if (!this.ctl.volumes.has(name)) throw httpError(404, 'ERR_USAGE', `no volume "${name}" (known: ${[...this.ctl.volumes.keys()].join(', ')})`)
      if (method === 'GET' && parts.length === 3) return this.getVolume(req, res, url, name)
      if (method === 'GET' && parts.length === 4 && parts[3] === 'events') return this.events(req, res, url, name)
      if (method === 'POST' && parts.length === 4 && parts[3] === 'switchover') {
        this.authorize(req)
        const body = await readJson(req)
        if (typeof body.to !== 'string' || body.to === '') throw httpError(400, 'ERR_USAGE', 'to: required (the node to switch over to)')
        this.log.info({ volume: name, to: body.to, from: req.socket.remoteAddress }, 'switchover requested')
        return sendJson(res, 200, await this.ctl.switchover(name, body.to))
      }
    }
    throw httpError(404, 'ERR_USAGE', `no such endpoint: ${method} ${url.pathname}`)
  }

  private async getVolume(req: IncomingMessage, res: ServerResponse, url: URL, name: string): Promise<void> {
    const after = intParam(url, 'after')
    const since = intParam(url, 'since')
    const timeoutMs = Math.min(intParam(url, 'timeoutMs') ?? 30_000, 300_000)
    const store = this.ctl.store
    const ready = (d: VolumeDoc | null): boolean => d !== null && (after === null || d.epoch > after) && (since === null || d.revision > since)
    let cur = (await store.getVolume(name))?.value ?? null
    if ((after !== null || since !== null) && !ready(cur)) {
      cur = await new Promise<VolumeDoc | null>(resolve => {
        let done = false
        const finish = (d: VolumeDoc | null): void => {
          if (done) return
          done = true
          clearTimeout(timer)
          unwatch()
          resolve(d)
        }
        const unwatch = store.watchVolume(name, since ?? cur?.revision ?? 0, d => {
          if (ready(d)) finish(d)
        })
        const timer = setTimeout(() => void store.getVolume(name).then(v => finish(v?.value ?? null), () => finish(null)), timeoutMs)
        req.once('close', () => finish(null))
      })
      if (res.destroyed || res.writableEnded) return
    }
    if (cur === null) throw httpError(404, 'ERR_NO_PRIMARY', `volume ${name} has no published document yet (no primary seen)`)
    sendJson(res, 200, cur)
  }

  private async events(req: IncomingMessage, res: ServerResponse, url: URL, name: string): Promise<void> {
    const store = this.ctl.store
    const since = intParam(url, 'since') ?? -1
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
    res.write(': blockrep configuration center\n\n')
    this.streams.add(res)
    let last = since
    const send = (d: VolumeDoc): void => {
      if (d.revision <= last) return
      last = d.revision
      res.write(`id: ${d.revision}\nevent: volume\ndata: ${JSON.stringify(d)}\n\n`)
    }
    const cur = (await store.getVolume(name))?.value ?? null
    if (cur !== null && since < 0) send(cur)
    const unwatch = store.watchVolume(name, last < 0 ? cur?.revision ?? 0 : last, send)
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000)
    req.once('close', () => {
      clearInterval(ping)
      unwatch()
      this.streams.delete(res)
    })
  }

  private authorize(req: IncomingMessage): void {
    if (this.tokenHash === null) throw httpError(403, 'ERR_AUTH_FAILED', 'state-changing calls are disabled: the controller has no adminToken configured')
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
    if (m === null) throw httpError(401, 'ERR_AUTH_FAILED', 'missing "Authorization: Bearer <token>"')
    if (!timingSafeEqual(sha256(m[1] as string), this.tokenHash)) throw httpError(401, 'ERR_AUTH_FAILED', 'wrong admin token')
  }

  private sendError(res: ServerResponse, err: unknown): void {
    const e = err as BlockrepError & { status?: number }
    const status = e.status ?? statusFor(e.code)
    if (status >= 500) this.log.error({ err }, 'controller API request failed')
    if (res.headersSent) {
      res.destroy()
      return
    }
    sendJson(res, status, { error: { code: e.code ?? 'ERR_INTERNAL', message: e.message } })
  }
}

function statusFor(code: string | undefined): number {
  switch (code) {
    case 'ERR_USAGE':
    case 'ERR_CONFIG':
      return 400
    case 'ERR_AUTH_FAILED':
      return 401
    case 'ERR_NOT_PRIMARY':
    case 'ERR_STORE_CONFLICT':
    case 'ERR_STALE_EPOCH':
    case 'ERR_FENCED':
    case 'ERR_NO_PRIMARY':
      return 409
    case 'ERR_NOT_LEADER':
    case 'ERR_STORE_UNAVAILABLE':
      return 503
    default:
      return 500
  }
}

function httpError(status: number, code: string, message: string): Error {
  return Object.assign(new BlockrepError(code as never, message), { status })
}

function intParam(url: URL, key: string): number | null {
  const v = url.searchParams.get(key)
  if (v === null) return null
  if (!/^-?\d+$/.test(v)) throw httpError(400, 'ERR_USAGE', `${key}: expected an integer, got ${JSON.stringify(v)}`)
  return Number(v)
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = `${JSON.stringify(value)}\n`
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > 64 * 1024) throw httpError(413, 'ERR_USAGE', 'request body larger than 64 KiB')
    chunks.push(chunk as Buffer)
  }
  const text = Buffer.concat(chunks).toString('utf8').trim()
  if (text === '') return {}
  try {
    const v = JSON.parse(text) as unknown
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>
  } catch {
    // answered below
  }
  throw httpError(400, 'ERR_USAGE', 'request body must be a JSON object')
}
