import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { BlockrepError } from '../util/errors.js'
import { silentLogger } from '../util/log.js'
import type { Logger } from '../util/log.js'
import { AgentMetrics } from './metrics.js'
import type { Endpoint } from './config.js'
import type { AdminTarget, VerifyJob } from './status-types.js'

/**
 * The agent's admin API, JSON over HTTP (loopback by default):
 *
 *   GET  /status                 NodeStatus
 *   GET  /plan                   PlanEntry[]
 *   GET  /metrics                Prometheus text
 *   GET  /verify?peer=ID         VerifyJob (404 when none was started)
 *   POST /promote    {force?}    {epoch, alreadyPrimary?}  (alreadyPrimary: nothing changed)
 *   POST /demote                 {ok: true, alreadyStandby}  (alreadyStandby: nothing changed)
 *   POST /verify     {peer}      202 VerifyJob (attaches to a running one)
 *   POST /connect    {peer}      {ok: true}
 *   POST /v1/control/lease      controller lease (docs/control-plane.md §1)
 *   POST /v1/control/release    take the node out of control
 *   POST /disconnect {peer}      {ok: true}
 *
 * POSTs need `Authorization: Bearer <adminToken>` (401 otherwise; 403 when no
 * token is configured, which disables them). Errors are
 * `{"error": {"code", "message", "context"}}` with the BlockrepError code.
 */
export interface AdminServerOptions {
  target: AdminTarget
  /** bearer token for state-changing calls; null disables them */
  token: string | null
  /** default 127.0.0.1 */
  host?: string
  /** default 7800; 0 picks a free port */
  port?: number
  /** default: a registry of its own, filled from target.status() */
  metrics?: AgentMetrics
  logger?: Logger
  /** clock, for tests */
  now?: () => number
}

export const DEFAULT_ADMIN_PORT = 7800
const MAX_BODY = 64 * 1024

/** The JSON error body of every non-2xx answer. */
export interface AdminErrorBody {
  error: { code: string; message: string; context?: Record<string, unknown> }
}

/** HTTP status for a BlockrepError code (anything unknown is 500). */
export function httpStatusFor(code: string): number {
  switch (code) {
    case 'ERR_USAGE':
    case 'ERR_CONFIG':
      return 400
    case 'ERR_AUTH_FAILED':
      return 401
    case 'ERR_NOT_PRIMARY':
    case 'ERR_READ_ONLY':
    case 'ERR_HANDSHAKE_REFUSED':
    case 'ERR_LOCK_HELD':
    case 'ERR_META_MISMATCH':
    case 'ERR_PEER_GONE':
    case 'ERR_STALE_EPOCH':
    case 'ERR_FENCED':
    case 'ERR_LEASE_EXPIRED':
    case 'ERR_NOT_LEADER':
      return 409
    case 'ERR_SHUTDOWN':
      return 503
    case 'ERR_TIMEOUT':
      return 504
    default:
      return 500
  }
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

export class AdminServer {
  private readonly target: AdminTarget
  private readonly tokenHash: Buffer | null
  private readonly host: string
  private readonly port: number
  private readonly log: Logger
  private readonly now: () => number
  private metrics: AgentMetrics | null
  private readonly verifies = new Map<string, VerifyJob>()
  private server: Server | null = null
  private bound: Endpoint | null = null

  constructor(opts: AdminServerOptions) {
    this.target = opts.target
    this.tokenHash = opts.token === null || opts.token === '' ? null : sha256(opts.token)
    this.host = opts.host ?? '127.0.0.1'
    this.port = opts.port ?? DEFAULT_ADMIN_PORT
    this.metrics = opts.metrics ?? null
    this.log = opts.logger ?? silentLogger()
    this.now = opts.now ?? Date.now
  }

  /** Where it listens, once `listen()` resolved. */
  get address(): Endpoint | null {
    return this.bound
  }

  /** Starts listening; resolves with the bound address (the real port when 0 was asked). */
  async listen(): Promise<Endpoint> {
    if (this.server !== null) throw new BlockrepError('ERR_USAGE', 'admin server already listening')
    const server = createServer((req, res) => {
      this.handle(req, res).catch(err => {
        this.log.error({ err }, 'admin request failed')
        if (!res.headersSent) res.destroy()
      })
    })
    server.headersTimeout = 10_000
    server.requestTimeout = 120_000
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, this.host, () => {
        server.off('error', reject)
        resolve()
      })
    }).catch(err => {
      this.server = null
      throw new BlockrepError('ERR_IO', `admin API cannot listen on ${this.host}:${this.port}: ${(err as Error).message}`, { cause: err })
    })
    const a = server.address() as AddressInfo
    this.bound = { host: a.address, port: a.port }
    this.log.info({ host: a.address, port: a.port, auth: this.tokenHash !== null }, 'admin API listening')
    return this.bound
  }

  /** Stops accepting; idle keep-alive connections close now, busy ones after 2 s. */
  async close(): Promise<void> {
    const server = this.server
    if (server === null) return
    this.server = null
    const done = new Promise<void>(resolve => server.close(() => resolve()))
    server.closeIdleConnections()
    const timer = setTimeout(() => server.closeAllConnections(), 2000)
    await done
    clearTimeout(timer)
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin')
    const method = req.method ?? 'GET'
    const route = `${method} ${url.pathname}`
    try {
      switch (route) {
        case 'GET /status':
          return sendJson(res, 200, this.target.status())
        case 'GET /plan':
          return sendJson(res, 200, await this.target.plan())
        case 'GET /metrics': {
          const status = this.target.status()
          this.metrics ??= new AgentMetrics({ node: status.node })
          const text = await this.metrics.render(status)
          res.writeHead(200, { 'content-type': this.metrics.contentType, 'cache-control': 'no-store' })
          res.end(text)
          return
        }
        case 'GET /verify':
          return sendJson(res, 200, this.verifyJob(requiredPeer(url.searchParams.get('peer'))))
      }
      if (method === 'POST' && POST_ROUTES.has(url.pathname)) {
        this.authorize(req)
        const body = await readJson(req)
        // lease renewals come every controller heartbeat: not worth an info line each
        this.log[url.pathname === '/v1/control/lease' ? 'debug' : 'info']({ call: url.pathname, body, from: req.socket.remoteAddress }, 'admin call')
        switch (url.pathname) {
          case '/v1/control/lease':
            return sendJson(res, 200, await this.control().lease(body))
          case '/v1/control/release':
            return sendJson(res, 200, await this.control().release())
          case '/promote': {
            if (this.target.control) return sendJson(res, 200, await this.target.control.promote(body))
            const force = body.force ?? false
            if (typeof force !== 'boolean') throw new HttpError(400, 'ERR_USAGE', 'force: expected true or false')
            return sendJson(res, 200, await this.target.promote(force))
          }
          case '/demote':
            if (this.target.control) return sendJson(res, 200, await this.target.control.demote(body))
            return sendJson(res, 200, { ok: true, ...(await this.target.demote()) })
          case '/verify':
            return sendJson(res, 202, await this.startVerify(requiredPeer(body.peer)))
          case '/connect':
            await this.target.connect(requiredPeer(body.peer))
            return sendJson(res, 200, { ok: true })
          case '/disconnect':
            await this.target.disconnect(requiredPeer(body.peer))
            return sendJson(res, 200, { ok: true })
        }
      }
      const allowed = ALLOWED[url.pathname]
      if (allowed !== undefined) {
        throw new HttpError(405, 'ERR_USAGE', `${method} not allowed on ${url.pathname} (use ${allowed})`, { allow: allowed })
      }
      throw new HttpError(404, 'ERR_USAGE', `no such endpoint: ${method} ${url.pathname}`)
    } catch (err) {
      this.sendError(res, route, err)
    }
  }

  private control(): NonNullable<AdminTarget['control']> {
    if (!this.target.control) throw new HttpError(404, 'ERR_USAGE', 'this agent has no control API')
    return this.target.control
  }

  private authorize(req: IncomingMessage): void {
    if (this.tokenHash === null) {
      throw new HttpError(403, 'ERR_AUTH_FAILED', 'state-changing calls are disabled: the agent has no adminToken configured')
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
    const challenge = { 'www-authenticate': 'Bearer realm="blockrep"' }
    if (m === null) throw new HttpError(401, 'ERR_AUTH_FAILED', 'missing "Authorization: Bearer <token>" (give --token or BLOCKREP_TOKEN)', challenge)
    if (!timingSafeEqual(sha256(m[1] as string), this.tokenHash)) {
      throw new HttpError(401, 'ERR_AUTH_FAILED', 'wrong admin token', challenge)
    }
  }

  private async startVerify(peer: string): Promise<VerifyJob> {
    const existing = this.verifies.get(peer)
    if (existing?.state === 'running') return this.verifyJob(peer)
    const job: VerifyJob = {
      peer,
      state: 'running',
      startedAt: this.now(),
      finishedAt: null,
      progress: null,
      result: null,
      error: null,
    }
    this.verifies.set(peer, job)
    const run = this.target.verify(peer).then(
      result => {
        job.state = 'done'
        job.result = result
        job.finishedAt = this.now()
        job.progress = null
        this.log.info({ peer, differing: result.differingBlocks.length, blocks: result.blocksCompared }, 'verify done')
      },
      (err: unknown) => {
        job.state = 'failed'
        job.error = errorFields(err)
        job.finishedAt = this.now()
        // a refusal is the caller's answer, not a fault of this agent: no stack
        if (err instanceof BlockrepError) this.log.warn({ peer, code: err.code, err: err.message }, 'verify failed')
        else this.log.warn({ peer, err }, 'verify failed')
      },
    )
    // A verify the target refuses at once (unknown peer, not connected) is an
    // error of this request, not a job to poll.
    await Promise.race([run, new Promise(resolve => setImmediate(resolve))])
    if (job.state === 'failed' && job.error !== null) {
      this.verifies.delete(peer)
      throw new HttpError(httpStatusFor(job.error.code), job.error.code, job.error.message)
    }
    return this.verifyJob(peer)
  }

  private verifyJob(peer: string): VerifyJob {
    const job = this.verifies.get(peer)
    if (job === undefined) throw new HttpError(404, 'ERR_USAGE', `no verify was started for peer "${peer}"`)
    if (job.state === 'running') job.progress = this.target.verifyProgress?.(peer) ?? null
    return job
  }

  private sendError(res: ServerResponse, route: string, err: unknown): void {
    let status: number
    let body: AdminErrorBody
    let headers: Record<string, string> = {}
    if (err instanceof HttpError) {
      status = err.status
      body = { error: { code: err.code, message: err.message } }
      headers = err.headers
    } else if (err instanceof BlockrepError) {
      status = httpStatusFor(err.code)
      body = { error: { code: err.code, message: err.message, context: jsonSafe(err.context) } }
    } else {
      status = 500
      body = { error: errorFields(err) }
    }
    const level = status >= 500 ? 'error' : 'debug'
    this.log[level]({ route, status, err }, 'admin request refused')
    if (res.headersSent) {
      res.destroy()
      return
    }
    sendJson(res, status, body, headers)
  }
}

const POST_ROUTES = new Set(['/promote', '/demote', '/verify', '/connect', '/disconnect', '/v1/control/lease', '/v1/control/release'])
const ALLOWED: Record<string, string> = {
  '/status': 'GET',
  '/plan': 'GET',
  '/metrics': 'GET',
  '/verify': 'GET, POST',
  '/promote': 'POST',
  '/demote': 'POST',
  '/connect': 'POST',
  '/disconnect': 'POST',
  '/v1/control/lease': 'POST',
  '/v1/control/release': 'POST',
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

function requiredPeer(v: unknown): string {
  if (typeof v !== 'string' || v.length === 0) throw new HttpError(400, 'ERR_USAGE', 'peer: required (a peer node id)')
  return v
}

function errorFields(err: unknown): { code: string; message: string } {
  if (err instanceof BlockrepError) return { code: err.code, message: err.message }
  return { code: 'ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) }
}

function jsonSafe(ctx: Record<string, unknown>): Record<string, unknown> | undefined {
  if (Object.keys(ctx).length === 0) return undefined
  try {
    return JSON.parse(JSON.stringify(ctx)) as Record<string, unknown>
  } catch {
    return undefined
  }
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(value)}\n`
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  })
  res.end(text)
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY) throw new HttpError(413, 'ERR_USAGE', `request body larger than ${MAX_BODY} bytes`)
    chunks.push(chunk as Buffer)
  }
  const text = Buffer.concat(chunks).toString('utf8').trim()
  if (text === '') return {}
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw new HttpError(400, 'ERR_USAGE', `request body is not JSON: ${(err as Error).message}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HttpError(400, 'ERR_USAGE', 'request body must be a JSON object')
  return v as Record<string, unknown>
}
