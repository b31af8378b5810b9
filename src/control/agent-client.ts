import { BlockrepError } from '../util/errors.js'

/**
 * The controller's view of an agent's admin API (docs/control-plane.md §1):
 * GET /status, POST /v1/control/lease, /promote, /demote. Only the fields the
 * controller reads are typed here; the controller never imports the engine.
 */
export interface AgentStatusView {
  node: string
  volumeId: string
  role: 'primary' | 'standby'
  epoch: number
  headSeq: number
  consistent: boolean
  peers: { node: string; state: string; ackedSeq: number; lastMode?: { mode: string } | null }[]
  nbd?: { address: string | null } | null
  control?: { controlled: boolean; writable: boolean; fenced: { reason: string } | null; lease: { valid: boolean; remainingMs: number } | null } | null
}

export interface LeaseGrant {
  controller: string
  term: number
  leaseMs: number
  /** the controller's monotonic clock when it sent the grant */
  sentAtMs: number
}

/** The agent answered with an HTTP error; `remoteCode` is its error code. */
export class AgentCallError extends BlockrepError {
  constructor(
    readonly status: number,
    readonly remoteCode: string,
    message: string,
  ) {
    super(status === 409 ? (remoteCode === 'ERR_FENCED' ? 'ERR_FENCED' : remoteCode === 'ERR_NOT_PRIMARY' ? 'ERR_NOT_PRIMARY' : 'ERR_STALE_EPOCH') : 'ERR_IO', message, { context: { status, remoteCode } })
    this.name = 'AgentCallError'
  }
}

export type Fetch = typeof fetch

export interface AgentClientOptions {
  /** "host:port" of the admin API */
  admin: string
  token: string | null
  fetch?: Fetch
}

export class AgentClient {
  private readonly base: string
  private readonly token: string | null
  private readonly fetch: Fetch

  constructor(opts: AgentClientOptions) {
    this.base = `http://${opts.admin}`
    this.token = opts.token
    this.fetch = opts.fetch ?? globalThis.fetch
  }

  async status(timeoutMs: number): Promise<AgentStatusView> {
    const v = await this.call('GET', '/status', undefined, timeoutMs)
    return checkStatus(v)
  }

  /** A lease grant; resolves 'unsupported' when the agent has no lease endpoint (404). */
  async lease(grant: LeaseGrant & { epoch: number }, timeoutMs: number): Promise<{ lease: { validForMs: number } | null } | 'unsupported'> {
    try {
      return (await this.call('POST', '/v1/control/lease', grant, timeoutMs)) as { lease: { validForMs: number } | null }
    } catch (err) {
      if (err instanceof AgentCallError && err.status === 404) return 'unsupported'
      throw err
    }
  }

  async promote(body: { controller: string; expectEpoch: number; lease: LeaseGrant }, timeoutMs: number): Promise<{ epoch: number }> {
    const v = (await this.call('POST', '/promote', { force: false, ...body }, timeoutMs)) as { epoch?: unknown }
    if (typeof v?.epoch !== 'number') throw new BlockrepError('ERR_PROTOCOL', `POST /promote on ${this.base} answered without an epoch`)
    return { epoch: v.epoch }
  }

  async demote(controller: string, timeoutMs: number): Promise<void> {
    await this.call('POST', '/demote', { controller }, timeoutMs)
  }

  private async call(method: string, path: string, body: unknown, timeoutMs: number): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' }
    if (body !== undefined) headers['content-type'] = 'application/json'
    if (this.token !== null && method !== 'GET') headers.authorization = `Bearer ${this.token}`
    let res: Response
    try {
      res = await this.fetch(`${this.base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) })
    } catch (err) {
      const e = err as Error
      if (e.name === 'TimeoutError') throw new BlockrepError('ERR_TIMEOUT', `${method} ${this.base}${path}: no answer within ${timeoutMs} ms`, { cause: err })
      throw new BlockrepError('ERR_IO', `${method} ${this.base}${path}: ${causeText(e)}`, { cause: err })
    }
    let text: string
    try {
      text = await res.text()
    } catch (err) {
      throw new BlockrepError('ERR_IO', `${method} ${this.base}${path}: ${causeText(err as Error)}`, { cause: err })
    }
    let json: unknown = null
    try {
      json = text === '' ? null : JSON.parse(text)
    } catch {
      if (res.ok) throw new BlockrepError('ERR_PROTOCOL', `${method} ${this.base}${path}: the answer is not JSON`)
    }
    if (!res.ok) {
      const e = (json as { error?: { code?: string; message?: string } } | null)?.error
      throw new AgentCallError(res.status, e?.code ?? 'ERR_IO', `${method} ${this.base}${path}: ${res.status} ${e?.code ?? ''} ${e?.message ?? text.slice(0, 200)}`.trim())
    }
    return json
  }
}

function causeText(e: Error): string {
  const c = (e as { cause?: { code?: string; message?: string } }).cause
  return c?.code ?? c?.message ?? e.message
}

function checkStatus(v: unknown): AgentStatusView {
  const s = v as Partial<AgentStatusView> | null
  if (
    s === null || typeof s !== 'object' || typeof s.node !== 'string' || (s.role !== 'primary' && s.role !== 'standby') ||
    typeof s.epoch !== 'number' || typeof s.headSeq !== 'number' || typeof s.consistent !== 'boolean' || !Array.isArray(s.peers)
  ) {
    throw new BlockrepError('ERR_PROTOCOL', 'GET /status answered something that is not an agent status')
  }
  return s as AgentStatusView
}
