import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Gauge, Registry } from 'prom-client'
import type { Logger } from '../util/log.js'
import type { ProxyStatus } from './nbd-proxy.js'

/**
 * The proxy's read-only HTTP endpoint: `GET /status` (JSON: the queue,
 * retries, oldest age, upstream and epoch) and `GET /metrics` (Prometheus).
 */
export class ProxyAdminServer {
  private readonly server: http.Server
  private readonly registry = new Registry()

  constructor(
    private readonly status: () => ProxyStatus,
    private readonly log: Logger,
  ) {
    this.defineMetrics()
    this.server = http.createServer((req, res) => void this.handle(req, res))
  }

  listen(port: number, host: string): Promise<{ port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.off('error', reject)
        const p = (this.server.address() as AddressInfo).port
        this.log.info({ host, port: p }, 'nbd-proxy: status endpoint listening')
        resolve({ port: p })
      })
    })
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise(resolve => this.server.close(() => resolve()))
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]
    try {
      if (req.method !== 'GET') return send(res, 405, 'application/json', JSON.stringify({ code: 'ERR_USAGE', message: 'only GET is served' }))
      if (path === '/status') return send(res, 200, 'application/json', JSON.stringify(this.status()))
      if (path === '/metrics') return send(res, 200, this.registry.contentType, await this.registry.metrics())
      send(res, 404, 'application/json', JSON.stringify({ code: 'ERR_USAGE', message: `no route ${path}; try /status or /metrics` }))
    } catch (err) {
      send(res, 500, 'application/json', JSON.stringify({ code: 'ERR_IO', message: err instanceof Error ? err.message : String(err) }))
    }
  }

  private defineMetrics(): void {
    const registers = [this.registry]
    const gauge = (name: string, help: string, value: (s: ProxyStatus) => number | null): void => {
      const status = this.status
      new Gauge({ name, help, registers, collect() { this.set(value(status()) ?? 0) } })
    }
    gauge('blockrep_proxy_queue_items', 'Client requests held by the proxy (waiting and in flight)', s => s.queue.items)
    gauge('blockrep_proxy_queue_waiting', 'Client requests waiting for a primary', s => s.queue.waiting)
    gauge('blockrep_proxy_queue_bytes', 'Bytes held by queued requests', s => s.queue.bytes)
    gauge('blockrep_proxy_queue_oldest_age_seconds', 'Age of the oldest held request', s => (s.queue.oldestAgeMs ?? 0) / 1000)
    gauge('blockrep_proxy_queue_max_retries', 'Highest retry count among held requests', s => s.queue.maxRetries)
    gauge('blockrep_proxy_retries_total', 'Requests put back in the queue after their path failed, since start', s => s.queue.totalRetries)
    gauge('blockrep_proxy_replayed_total', 'Requests replayed to a primary, since start', s => s.queue.replayed)
    gauge('blockrep_proxy_failed_no_path_total', 'Requests failed with EIO because no primary answered within the bound', s => s.queue.failedNoPath)
    gauge('blockrep_proxy_epoch', 'Newest epoch the proxy knows', s => s.epoch)
    gauge('blockrep_proxy_upstream_connected', '1 while connected to the primary', s => (s.upstream?.connected === true ? 1 : 0))
    gauge('blockrep_proxy_path_losses_total', 'Times the upstream path was lost', s => s.reconnect.pathLosses)
  }
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type })
  res.end(body)
}
