import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Teardown } from '../../src/demo/local-cluster.js'

export interface FakeCall {
  path: string
  body: any
  /** performance.now() of this process when the call arrived */
  at: number
}

/**
 * An agent admin API stand-in on a real loopback port, for testing the
 * controller shell in-process: GET /status, POST /v1/control/lease (or 404),
 * /promote (checks expectEpoch), /demote. `down` drops every connection.
 */
export class FakeAgent {
  role: 'primary' | 'standby'
  epoch = 1
  headSeq = 100
  consistent = true
  down = false
  statusDelayMs = 0
  leaseSupported = true
  readonly calls: FakeCall[] = []
  port = 0

  constructor(readonly node: string, role: 'primary' | 'standby') {
    this.role = role
  }

  static async start(t: Teardown, node: string, role: 'primary' | 'standby'): Promise<FakeAgent> {
    const a = new FakeAgent(node, role)
    const server = createServer((req, res) => {
      if (a.down) return void req.socket.destroy()
      let text = ''
      req.on('data', d => (text += d))
      req.on('end', () => {
        const body = text === '' ? {} : JSON.parse(text)
        const send = (status: number, v: unknown) => {
          if (a.down) return void req.socket.destroy()
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(v))
        }
        const path = req.url ?? '/'
        if (req.method === 'GET' && path === '/status') {
          // the status as of the request's arrival, answered after the delay (a slow network or agent)
          const snapshot = { node: a.node, volumeId: 'v', role: a.role, epoch: a.epoch, headSeq: a.headSeq, consistent: a.consistent, peers: [] }
          setTimeout(() => send(200, snapshot), a.statusDelayMs)
          return
        }
        a.calls.push({ path, body, at: performance.now() })
        if (path === '/v1/control/lease') {
          if (!a.leaseSupported) return send(404, { error: { code: 'ERR_USAGE', message: 'no such endpoint' } })
          if (body.epoch !== a.epoch || a.role !== 'primary') return send(409, { error: { code: 'ERR_STALE_EPOCH', message: 'stale' } })
          return send(200, { node: a.node, role: a.role, epoch: a.epoch, headSeq: a.headSeq, lease: { validForMs: body.leaseMs, holder: body.controller } })
        }
        if (path === '/promote') {
          if (body.expectEpoch !== a.epoch) return send(409, { error: { code: 'ERR_STALE_EPOCH', message: `epoch is ${a.epoch}` } })
          if (!a.consistent) return send(409, { error: { code: 'ERR_NOT_PRIMARY', message: 'inconsistent' } })
          a.role = 'primary'
          a.epoch += 1
          return send(200, { epoch: a.epoch })
        }
        if (path === '/demote') {
          a.role = 'standby'
          return send(200, { ok: true })
        }
        send(404, { error: { code: 'ERR_USAGE', message: 'no such endpoint' } })
      })
    })
    await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
    a.port = (server.address() as AddressInfo).port
    t.teardown(() => new Promise<void>(r => { server.closeAllConnections(); server.close(() => r()) }))
    return a
  }

  get admin(): string {
    return `127.0.0.1:${this.port}`
  }

  callsTo(path: string): FakeCall[] {
    return this.calls.filter(c => c.path === path)
  }
}
