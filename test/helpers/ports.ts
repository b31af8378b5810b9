import net from 'node:net'

/** Free loopback TCP ports (bound and released; good enough on a test machine). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = []
  const ports: number[] = []
  for (let i = 0; i < n; i++) {
    const s = net.createServer()
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    servers.push(s)
    ports.push((s.address() as net.AddressInfo).port)
  }
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  return ports
}
