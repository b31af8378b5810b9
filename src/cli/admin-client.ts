import { request } from 'node:http'
import { Option } from 'commander'
import type { Command } from 'commander'
import { BlockrepError, ErrorCode } from '../util/errors.js'
import { DEFAULT_ADMIN, formatHostPort, parseHostPort } from '../agent/config.js'
import type { Endpoint } from '../agent/config.js'
import type { NodeStatus, PlanEntry, VerifyJob } from '../agent/status-types.js'

/**
 * HTTP client of the agent's admin API (src/agent/admin-server.ts). Every
 * failure is a BlockrepError: the agent's own error code when it answered
 * with one (AdminApiError), ERR_IO when it cannot be reached, ERR_TIMEOUT,
 * ERR_PROTOCOL when the answer is not the admin API's.
 */
export interface AdminClientOptions {
  /** "host:port" or an Endpoint */
  address: string | Endpoint
  token?: string | null
  /** per request; default 30 s */
  timeoutMs?: number
}

/** The agent answered with an error. `remoteCode` is its code verbatim (may be ERR_INTERNAL). */
export class AdminApiError extends BlockrepError {
  constructor(
    readonly status: number,
    readonly remoteCode: string,
    message: string,
    context: Record<string, unknown> = {},
  ) {
    super(isErrorCode(remoteCode) ? remoteCode : 'ERR_IO', message, { context: { ...context, status, remoteCode } })
    this.name = 'AdminApiError'
  }
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode))
function isErrorCode(s: string): s is ErrorCode {
  return KNOWN_CODES.has(s)
}

export class AdminClient {
  readonly endpoint: Endpoint
  private readonly token: string | null
  private readonly timeoutMs: number

  constructor(opts: AdminClientOptions) {
    this.endpoint = typeof opts.address === 'string' ? parseHostPort(opts.address, '--admin', { code: 'ERR_USAGE' }) : opts.address
    this.token = opts.token ?? null
    this.timeoutMs = opts.timeoutMs ?? 30_000
  }

  status(): Promise<NodeStatus> {
    return this.json('GET', '/status')
  }

  plan(): Promise<PlanEntry[]> {
    return this.json('GET', '/plan')
  }

  /** Prometheus text. */
  async metrics(): Promise<string> {
    return (await this.call('GET', '/metrics')).text
  }

  /** `alreadyPrimary` true: the node already was primary, nothing changed. */
  promote(force = false): Promise<{ epoch: number; alreadyPrimary?: boolean }> {
    return this.json('POST', '/promote', { force })
  }

  /** `alreadyStandby` true: the node already was a standby, nothing changed. */
  async demote(): Promise<{ alreadyStandby: boolean }> {
    const r = await this.json<{ alreadyStandby?: boolean }>('POST', '/demote', {})
    return { alreadyStandby: r.alreadyStandby === true }
  }

  /** Starts a verify against `peer`, or attaches to the one already running. */
  startVerify(peer: string): Promise<VerifyJob> {
    return this.json('POST', '/verify', { peer })
  }

  verifyJob(peer: string): Promise<VerifyJob> {
    return this.json('GET', `/verify?peer=${encodeURIComponent(peer)}`)
  }

  async connect(peer: string): Promise<void> {
    await this.json('POST', '/connect', { peer })
  }

  async disconnect(peer: string): Promise<void> {
    await this.json('POST', '/disconnect', { peer })
  }

  private async json<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const { text } = await this.call(method, path, body)
    try {
      return JSON.parse(text) as T
    } catch {
      throw new BlockrepError('ERR_PROTOCOL', `${this.where()} answered ${method} ${path} with something that is not JSON`)
    }
  }

  private where(): string {
    return `admin API at ${formatHostPort(this.endpoint)}`
  }

  private call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; text: string }> {
    const payload = body === undefined ? null : JSON.stringify(body)
    const headers: Record<string, string | number> = { accept: 'application/json' }
    if (payload !== null) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = Buffer.byteLength(payload)
    }
    if (method === 'POST' && this.token !== null) headers.authorization = `Bearer ${this.token}`
    return new Promise((resolve, reject) => {
      const req = request({ host: this.endpoint.host, port: this.endpoint.port, method, path, headers, agent: false })
      req.setTimeout(this.timeoutMs, () => {
        req.destroy(new BlockrepError('ERR_TIMEOUT', `${this.where()} did not answer ${method} ${path} within ${this.timeoutMs} ms`))
      })
      req.on('error', err => {
        if (err instanceof BlockrepError) return reject(err)
        const code = (err as NodeJS.ErrnoException).code
        if (typeof code === 'string' && code.startsWith('HPE_')) return reject(this.notAdminApi(err))
        const hint = code === 'ECONNREFUSED' ? ' (is the agent running, and is this its admin address?)' : ''
        reject(new BlockrepError('ERR_IO', `cannot reach the ${this.where()}: ${err.message}${hint}`, { cause: err }))
      })
      req.on('response', res => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', err => reject(new BlockrepError('ERR_IO', `${this.where()}: ${err.message}`, { cause: err })))
        res.on('end', () => {
          const status = res.statusCode ?? 0
          const text = Buffer.concat(chunks).toString('utf8')
          if (status >= 200 && status < 300) return resolve({ status, text })
          reject(this.apiError(status, text, `${method} ${path}`))
        })
      })
      req.end(payload ?? undefined)
    })
  }

  /** Something answered that is not HTTP: name it when it is one of ours (NBD says NBDMAGIC first). */
  private notAdminApi(err: Error): BlockrepError {
    const where = formatHostPort(this.endpoint)
    const raw = (err as Error & { rawPacket?: unknown }).rawPacket
    const first = Buffer.isBuffer(raw) ? raw : Buffer.alloc(0)
    const what = first.subarray(0, 8).toString('latin1') === 'NBDMAGIC'
      ? 'it is an NBD export'
      : 'it answered with something that is not HTTP (a replication port, or another service?)'
    return new BlockrepError('ERR_PROTOCOL', `${where} does not speak the admin API: ${what}; give --admin the "admin" address of the agent's config (default ${DEFAULT_ADMIN})`, {
      cause: err,
      context: { address: where },
    })
  }

  private apiError(status: number, text: string, call: string): BlockrepError {
    try {
      const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; context?: unknown } }
      const e = body.error
      if (e !== undefined && typeof e.code === 'string' && typeof e.message === 'string') {
        const ctx = typeof e.context === 'object' && e.context !== null ? (e.context as Record<string, unknown>) : {}
        return new AdminApiError(status, e.code, e.message, ctx)
      }
    } catch {
      // not ours: fall through
    }
    return new BlockrepError('ERR_PROTOCOL', `${this.where()} answered ${call} with HTTP ${status} and no blockrep error (is this the admin address?)`, {
      context: { status },
    })
  }
}

/** Options every admin-talking subcommand takes. */
export interface AdminCliOptions {
  admin: string
  token?: string
  timeout?: string
}

/** Adds --admin HOST:PORT (env BLOCKREP_ADMIN, default 127.0.0.1:7800), --token (env BLOCKREP_TOKEN) and --timeout MS. */
export function addAdminOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--admin <host:port>', 'the agent\'s admin API address').env('BLOCKREP_ADMIN').default(DEFAULT_ADMIN))
    .addOption(new Option('--token <token>', 'admin token for state-changing calls').env('BLOCKREP_TOKEN'))
    .addOption(new Option('--timeout <ms>', 'per-request timeout in milliseconds').default('30000'))
}

/** An AdminClient from the parsed options; bad values are usage errors. */
export function adminClientFrom(opts: AdminCliOptions): AdminClient {
  const timeoutMs = Number(opts.timeout ?? '30000')
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) {
    throw new BlockrepError('ERR_USAGE', `--timeout: expected a positive number of milliseconds, got ${JSON.stringify(opts.timeout)}`)
  }
  return new AdminClient({ address: opts.admin, token: opts.token ?? null, timeoutMs })
}
