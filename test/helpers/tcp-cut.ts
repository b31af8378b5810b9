import net from 'node:net'
import type { Teardown } from '../../src/demo/local-cluster.js'

/** A loopback TCP proxy that can cut (drop every connection and refuse new ones) and heal: a network partition of one link. */
export class CuttableProxy {
  private cutNow = false
  private readonly sockets = new Set<net.Socket>()

  private constructor(private readonly server: net.Server, readonly port: number) {}

  static async create(t: Teardown, targetPort: number): Promise<CuttableProxy> {
    let self: CuttableProxy | null = null
    const server = net.createServer(client => {
      if (self === null || self.cutNow) return void client.destroy()
      const upstream = net.connect(targetPort, '127.0.0.1')
      for (const s of [client, upstream]) {
        self.sockets.add(s)
        s.on('close', () => self?.sockets.delete(s))
        s.on('error', () => {})
      }
      client.pipe(upstream)
      upstream.pipe(client)
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
    })
    await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
    self = new CuttableProxy(server, (server.address() as net.AddressInfo).port)
    const p = self
    t.teardown(() => p.close())
    return p
  }

  get address(): string {
    return `127.0.0.1:${this.port}`
  }

  cut(): void {
    this.cutNow = true
    for (const s of this.sockets) s.destroy()
  }

  heal(): void {
    this.cutNow = false
  }

  close(): Promise<void> {
    this.cut()
    return new Promise(r => this.server.close(() => r()))
  }
}
