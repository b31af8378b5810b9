import net from 'node:net'

/**
 * A TCP proxy for fault injection: listens on loopback, forwards every
 * connection to a target, and on command delays, stalls, cuts or truncates
 * the traffic. Used by the soak (`scripts/soak.ts`) and the tests; it lives in
 * `src/` so the compiled scripts can import it. Nothing in the engine uses it.
 *
 * - `delay(ms)`: every chunk is forwarded `ms` (± `jitterMs`) after it
 *   arrived, in order (latency, not a bandwidth limit).
 * - `stall()`: stop forwarding in both directions and stop reading (TCP
 *   backpressure builds up); the sockets stay open; new connections are
 *   accepted and stall too. `resume()` releases everything held, in order.
 * - `cut()`: destroy every current connection, both sides (new ones are
 *   still accepted).
 * - `truncate(n)`: the next chunk (in `direction`) is forwarded only up to
 *   `n` bytes (never the whole chunk), then that connection is closed on
 *   both sides: the receiver sees half a frame, then the end.
 * - `refuse(true)`: new connections are accepted and closed at once.
 */
export type Direction = 'up' | 'down'

export interface FaultCounts {
  delay: number
  stall: number
  cut: number
  truncate: number
  refuse: number
}

interface Pipe {
  src: net.Socket
  dst: net.Socket
  dir: Direction
  /** when the previous delayed chunk goes out (keeps order under jitter) */
  lastAt: number
  /** chunks held while stalled or while the target connects; an empty one stands for the end */
  held: Buffer[]
  ended: boolean
  /** paused until the destination drains */
  draining: boolean
}

interface Conn {
  client: net.Socket
  server: net.Socket
  up: Pipe
  down: Pipe
  connected: boolean
  dead: boolean
}

export interface FaultProxyOptions {
  /** listen host (default 127.0.0.1) */
  host?: string
  /** random source for jitter (default Math.random; pass a seeded one for reproducible runs) */
  random?: () => number
}

export class FaultProxy {
  /** bytes forwarded client → target and target → client */
  readonly bytes = { up: 0, down: 0 }
  /** commands given, per kind */
  readonly faults: FaultCounts = { delay: 0, stall: 0, cut: 0, truncate: 0, refuse: 0 }
  /** connections accepted since start */
  accepted = 0
  private readonly conns = new Set<Conn>()
  private delayMs = 0
  private jitterMs = 0
  private stalled = false
  private refusing = false
  private truncation: { bytes: number; dir: Direction | 'any'; fired: () => void } | null = null
  private readonly random: () => number

  private constructor(
    private readonly server: net.Server,
    readonly target: { host: string; port: number },
    opts: FaultProxyOptions,
  ) {
    this.random = opts.random ?? Math.random
  }

  /** Starts a proxy to `target` on a free loopback port. */
  static async start(target: { host: string; port: number }, opts: FaultProxyOptions = {}): Promise<FaultProxy> {
    const server = net.createServer()
    const proxy = new FaultProxy(server, target, opts)
    server.on('connection', (s) => proxy.onConnection(s))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, opts.host ?? '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
    return proxy
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port
  }

  /** "127.0.0.1:port", for a peer address in a config. */
  get address(): string {
    return `127.0.0.1:${this.port}`
  }

  /** Connections open now. */
  get open(): number {
    return this.conns.size
  }

  get isStalled(): boolean {
    return this.stalled
  }

  /** Forward every chunk `ms` (± `jitterMs`) after it arrives. `delay(0)` turns it off. */
  delay(ms: number, jitterMs = 0): void {
    if (ms > 0) this.faults.delay++
    this.delayMs = Math.max(0, ms)
    this.jitterMs = Math.max(0, jitterMs)
  }

  /** Stop forwarding and reading; keep every socket open. */
  stall(): void {
    if (this.stalled) return
    this.faults.stall++
    this.stalled = true
    for (const c of this.conns) {
      c.client.pause()
      c.server.pause()
    }
  }

  /** Undo `stall`, `delay` and `refuse`: forward what was held, in order, and read again. */
  resume(): void {
    this.delayMs = 0
    this.jitterMs = 0
    this.refusing = false
    if (!this.stalled) return
    this.stalled = false
    for (const c of this.conns) {
      for (const p of [c.up, c.down]) this.flushHeld(c, p)
      if (!c.dead && c.connected) {
        c.client.resume()
        c.server.resume()
      }
    }
  }

  /** Destroy every open connection, both sides. Returns how many there were. */
  cut(): number {
    this.faults.cut++
    const n = this.conns.size
    for (const c of [...this.conns]) this.kill(c)
    return n
  }

  /**
   * Arm a truncation: the next chunk in `dir` ('any' = whichever comes
   * first) is forwarded only up to `bytes` (at most its length − 1), then its
   * connection is closed. Resolves when it fired.
   */
  truncate(bytes: number, dir: Direction | 'any' = 'any'): Promise<void> {
    this.faults.truncate++
    return new Promise((resolve) => {
      this.truncation = { bytes: Math.max(0, Math.floor(bytes)), dir, fired: resolve }
    })
  }

  /** Disarm a pending truncation (it never fired). */
  disarm(): void {
    this.truncation = null
  }

  /** While on, new connections are closed as soon as they arrive (a peer that is down). */
  refuse(on: boolean): void {
    if (on && !this.refusing) this.faults.refuse++
    this.refusing = on
  }

  async close(): Promise<void> {
    for (const c of [...this.conns]) this.kill(c)
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private onConnection(client: net.Socket): void {
    this.accepted++
    client.on('error', () => {})
    if (this.refusing) {
      client.destroy()
      return
    }
    client.setNoDelay(true)
    client.pause()
    const server = net.connect({ host: this.target.host, port: this.target.port })
    server.on('error', () => {})
    server.setNoDelay(true)
    const c: Conn = {
      client,
      server,
      connected: false,
      dead: false,
      up: { src: client, dst: server, dir: 'up', lastAt: 0, held: [], ended: false, draining: false },
      down: { src: server, dst: client, dir: 'down', lastAt: 0, held: [], ended: false, draining: false },
    }
    this.conns.add(c)
    for (const p of [c.up, c.down]) {
      p.src.on('data', (chunk: Buffer) => this.onChunk(c, p, chunk))
      // a half-close is passed on once what was held or delayed has gone
      p.src.on('end', () => this.endPipe(c, p))
      p.src.on('close', (hadError: boolean) => {
        if (hadError) {
          this.kill(c)
          return
        }
        this.endPipe(c, p)
        if (c.client.destroyed && c.server.destroyed) this.conns.delete(c)
        // never leave the other side open for long after one side went
        setTimeout(() => this.kill(c), 2000).unref()
      })
    }
    server.once('connect', () => {
      c.connected = true
      if (c.dead) return
      this.flushHeld(c, c.up)
      if (!this.stalled) client.resume()
      else server.pause()
    })
  }

  private onChunk(c: Conn, p: Pipe, chunk: Buffer): void {
    if (c.dead) return
    const tr = this.truncation
    if (tr && (tr.dir === 'any' || tr.dir === p.dir)) {
      this.truncation = null
      const n = Math.min(tr.bytes, Math.max(0, chunk.length - 1))
      this.forward(c, p, chunk.subarray(0, n), true)
      tr.fired()
      return
    }
    if (this.stalled || !c.connected || p.held.length > 0) {
      p.held.push(chunk)
      if (this.stalled) p.src.pause()
      return
    }
    this.forward(c, p, chunk, false)
  }

  private flushHeld(c: Conn, p: Pipe): void {
    if (c.dead || !c.connected || this.stalled) return
    const held = p.held.splice(0)
    for (const chunk of held) {
      if (chunk.length === 0) p.dst.end()
      else this.forward(c, p, chunk, false)
    }
  }

  /** Write `chunk` to the pipe's destination, now or after the delay; `thenCut` closes the connection after it. */
  private forward(c: Conn, p: Pipe, chunk: Buffer, thenCut: boolean): void {
    const send = (): void => {
      if (c.dead) return
      this.bytes[p.dir] += chunk.length
      const ok = chunk.length === 0 || p.dst.write(chunk)
      if (thenCut) {
        // the receiver gets the partial bytes, then the end; the sender's side goes at once
        c.dead = true
        this.conns.delete(c)
        p.src.destroy()
        p.dst.end()
        setTimeout(() => p.dst.destroy(), 500).unref()
        return
      }
      if (!ok && !this.stalled && !p.draining) {
        p.draining = true
        p.src.pause()
        p.dst.once('drain', () => {
          p.draining = false
          if (!this.stalled && !c.dead) p.src.resume()
        })
      }
    }
    if (this.delayMs <= 0) {
      send()
      return
    }
    const jitter = this.jitterMs > 0 ? (this.random() * 2 - 1) * this.jitterMs : 0
    const at = Math.max(Date.now() + Math.max(0, this.delayMs + jitter), p.lastAt)
    p.lastAt = at
    setTimeout(send, at - Date.now())
  }

  private endPipe(c: Conn, p: Pipe): void {
    if (p.ended || c.dead) return
    p.ended = true
    if (p.held.length > 0) p.held.push(Buffer.alloc(0))
    else if (p.lastAt > Date.now()) setTimeout(() => p.dst.end(), p.lastAt - Date.now())
    else p.dst.end()
  }

  private kill(c: Conn): void {
    if (!this.conns.delete(c) && c.dead) return
    c.dead = true
    c.client.destroy()
    c.server.destroy()
  }
}
