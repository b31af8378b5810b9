import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Teardown } from '../../src/demo/local-cluster.js'

export interface WebhookEvent {
  event: 'raised' | 'cleared'
  alarm: { id: string; kind: string; volume: string | null; node: string | null; site: string | null; message: string; raisedAt: number; clearedAt: number | null }
}

/** A real HTTP server collecting the controller's alarm webhook POSTs. */
export async function webhookServer(t: Teardown): Promise<{ url: string; events: WebhookEvent[] }> {
  const events: WebhookEvent[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', d => (body += d))
    req.on('end', () => {
      try {
        events.push(JSON.parse(body) as WebhookEvent)
        res.writeHead(204).end()
      } catch {
        res.writeHead(400).end()
      }
    })
  })
  await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>(r => { server.closeAllConnections(); server.close(() => r()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/alarm`, events }
}
