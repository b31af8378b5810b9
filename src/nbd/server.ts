import net from 'node:net'
import type { AddressInfo } from 'node:net'
import type { BlockEngine } from './engine.js'
import { NbdSession, newStats } from './session.js'
import type { NbdLogger, NbdStats, SessionLimits, SessionOutput } from './session.js'

export interface NbdServerOptions {
  engine: BlockEngine
  log?: NbdLogger
  limits?: Partial<SessionLimits>
  /** advertise CAN_MULTI_CONN; default true because engine.flush() covers every connection */
  multiConn?: boolean
  /** close a connection that has not finished the handshake after this long (ms); default 30 s */
  handshakeTimeoutMs?: number
  /** a server-wide condition on reading from clients (the nbd-proxy's queued-bytes bound); default: always open */
  readGate?: ReadGate
}

/** A server-wide switch on reading: while closed, no socket is read, whatever its session wants. */
export interface ReadGate {
  isOpen(): boolean
  /** `fn` runs whenever `isOpen()` may have changed */
  onChange(fn: () => void): void
}

/**
 * The transport: a net.Server whose sockets feed NbdSessions. Each reply is
 * written corked (header + data back to back); reading pauses while a
 * session is over its in-flight bounds.
 */
export class NbdServer {
  private readonly opts: NbdServerOptions
  private readonly server: net.Server
  private readonly sessions = new Map<net.Socket, NbdSession>()
  private readonly socketClosed = new Set<Promise<void>>()
  private readonly counters: NbdStats = newStats()
  private nextId = 1
  private closing: Promise<void> | undefined

  constructor(opts: NbdServerOptions) {
    this.opts = opts
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, socket => this.accept(socket))
    opts.readGate?.onChange(() => {
      for (const apply of this.applyReading.values()) apply()
    })
  }

  /** per socket: pause or resume it from its session's wish and the read gate */
  private readonly applyReading = new Map<net.Socket, () => void>()

  /** Start listening; resolves with the bound port (use 0 for an ephemeral one). */
  listen(port: number, host = '127.0.0.1'): Promise<{ port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err)
      this.server.once('error', onError)
      this.server.listen(port, host, () => {
        this.server.off('error', onError)
        const addr = this.server.address() as AddressInfo
        this.opts.log?.info({ port: addr.port, host, export: this.opts.engine.name }, 'nbd: listening')
        resolve({ port: addr.port })
      })
    })
  }

  /** Open connections right now. */
  get connections(): number {
    return this.sessions.size
  }

  /** A snapshot of the counters (connections, requests, errors, bytes read / written). */
  stats(): NbdStats {
    return { ...this.counters, connections: this.sessions.size }
  }

  /**
   * Stop accepting, let every session finish the requests it has in flight
   * (new ones get ESHUTDOWN), close the connections, and resolve.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose()
    return this.closing
  }

  private async doClose(): Promise<void> {
    const stopped = new Promise<void>(resolve => this.server.close(() => resolve()))
    await Promise.all([...this.sessions.values()].map(s => s.shutdown()))
    // sessions ended their sockets gracefully; don't wait forever on a peer that never closes
    const deadline = setTimeout(() => {
      for (const socket of this.sessions.keys()) socket.destroy()
    }, 5000)
    await stopped
    await Promise.all(this.socketClosed)
    clearTimeout(deadline)
  }

  private accept(socket: net.Socket): void {
    if (this.closing !== undefined) {
      socket.destroy()
      return
    }
    const id = this.nextId++
    const log = this.opts.log
    const gate = this.opts.readGate
    let wantRead = true
    const applyReading = (): void => {
      if (socket.destroyed) return
      if (wantRead && (gate === undefined || gate.isOpen())) socket.resume()
      else socket.pause()
    }
    if (gate !== undefined) this.applyReading.set(socket, applyReading)
    const output: SessionOutput = {
      send(chunks, done) {
        if (socket.destroyed) {
          done?.()
          return
        }
        if (chunks.length === 1) {
          socket.write(chunks[0] as Buffer, done === undefined ? undefined : () => done())
          return
        }
        socket.cork()
        for (let i = 0; i < chunks.length - 1; i++) socket.write(chunks[i] as Buffer)
        socket.write(chunks[chunks.length - 1] as Buffer, done === undefined ? undefined : () => done())
        socket.uncork()
      },
      setReading(on) {
        wantRead = on
        applyReading()
      },
      end() {
        // keep reading (the session ignores it) so the peer's FIN is seen and 'close' follows;
        // a peer that never closes its side is dropped after a grace period
        socket.resume()
        socket.end()
        setTimeout(() => socket.destroy(), 10_000).unref()
      },
      destroy() {
        socket.destroy()
      },
    }
    const session = new NbdSession({
      engine: this.opts.engine,
      output,
      id,
      ...(log === undefined ? {} : { log }),
      ...(this.opts.limits === undefined ? {} : { limits: this.opts.limits }),
      ...(this.opts.multiConn === undefined ? {} : { multiConn: this.opts.multiConn }),
      stats: this.counters,
    })
    this.sessions.set(socket, session)
    this.counters.totalConnections++
    log?.debug({ conn: id, remote: `${socket.remoteAddress}:${socket.remotePort}` }, 'nbd: connection')

    const timer = setTimeout(() => {
      if (session.phase === 'handshake') {
        log?.warn({ conn: id }, 'nbd: handshake timeout')
        socket.destroy()
      }
    }, this.opts.handshakeTimeoutMs ?? 30_000)
    timer.unref()

    socket.on('data', (chunk: Buffer) => session.receive(chunk))
    // attaching 'data' set the socket flowing: honour a gate that is already closed
    if (gate !== undefined) applyReading()
    socket.on('error', err => log?.debug({ conn: id, err }, 'nbd: socket error'))
    // a half-close from the peer: answer what is in flight, then close our side
    socket.on('end', () => session.peerEnded())
    const closed = new Promise<void>(resolve => socket.on('close', () => {
      clearTimeout(timer)
      session.transportClosed()
      this.sessions.delete(socket)
      this.applyReading.delete(socket)
      this.socketClosed.delete(closed)
      log?.debug({ conn: id }, 'nbd: connection closed')
      resolve()
    }))
    this.socketClosed.add(closed)
    session.start()
  }
}
