import net from 'node:net'
import tls from 'node:tls'
import { BlockrepError, ErrorCode } from '../util/errors.js'
import { encodeFrame } from './frame-codec.js'
import { MAX_TEXT_LENGTH } from './validate.js'
import { connectTransport, FrameTransport } from './transport.js'
import type { TransportOptions } from './transport.js'
import type { ErrorMsg } from './messages.js'

/**
 * TLS for the replication link, kept below the frame layer: the dialer and the
 * acceptor hand back an ordinary `FrameTransport` (a `tls.TLSSocket` is a
 * `net.Socket`), so the handshake, catch-up and streaming code never know
 * whether the bytes are encrypted. The HMAC challenge still runs inside TLS.
 *
 * Both sides present a certificate and verify the other's against `ca`
 * (mutual TLS). The dialer also checks that the listener's certificate names
 * the address it dialed, unless `verifyHostname` is false.
 */
export interface TlsConfig {
  /** this node's certificate chain (PEM) */
  cert: Buffer
  /** its private key (PEM); never logged */
  key: Buffer
  /** the CA bundle (PEM) the peer's certificate must chain to */
  ca: Buffer
  /** refuse peers that connect without TLS (default true); false accepts both while a cluster migrates */
  require: boolean
  /** the dialer checks the listener's certificate against the dialed host name or IP */
  verifyHostname: boolean
}

/** The first byte of a TLS record carrying a handshake (ClientHello); a plain frame starts with its length's high byte, 0. */
const TLS_HANDSHAKE_RECORD = 0x16

export interface DialOptions extends TransportOptions {
  timeoutMs?: number
  /** dial with TLS when set */
  tls?: TlsConfig | null
}

/**
 * Dial `host:port`, over TLS when `opts.tls` is set. Rejects with
 * ERR_AUTH_FAILED when the listener's certificate does not verify,
 * ERR_PEER_GONE when the connection fails (with a hint when the listener
 * hung up during the TLS handshake: it may have no TLS configured) and
 * ERR_TIMEOUT after `timeoutMs` (default 10 s).
 */
export function dialTransport(host: string, port: number, opts: DialOptions = {}): Promise<FrameTransport> {
  const cfg = opts.tls
  if (!cfg) return connectTransport(host, port, opts)
  const timeoutMs = opts.timeoutMs ?? 10_000
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      cert: cfg.cert,
      key: cfg.key,
      ca: cfg.ca,
      // SNI carries names only
      servername: net.isIP(host) === 0 ? host : undefined,
      rejectUnauthorized: true,
      checkServerIdentity: cfg.verifyHostname ? tls.checkServerIdentity : () => undefined,
      minVersion: 'TLSv1.2',
    })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new BlockrepError(ErrorCode.TIMEOUT, `TLS connect to ${where} timed out after ${timeoutMs} ms`, { context: { host, port, timeoutMs } }))
    }, timeoutMs)
    const onError = (err: NodeJS.ErrnoException): void => {
      clearTimeout(timer)
      socket.destroy()
      reject(dialError(err, where, host, port))
    }
    socket.once('error', onError)
    socket.once('secureConnect', () => {
      clearTimeout(timer)
      socket.off('error', onError)
      resolve(new FrameTransport(socket, opts))
    })
  })
}

function dialError(err: NodeJS.ErrnoException, where: string, host: string, port: number): BlockrepError {
  const context = { host, port, tlsCode: err.code }
  if (isCertificateError(err)) {
    return new BlockrepError(ErrorCode.AUTH_FAILED, `TLS: the certificate of ${where} was rejected: ${err.message}${err.code ? ` (${err.code})` : ''}`, { cause: err, context })
  }
  const hint = err.code === 'ECONNRESET' || /disconnected before secure TLS|socket hang up/.test(err.message)
    ? ' (the peer hung up during the TLS handshake: does it have tls configured?)'
    : ''
  return new BlockrepError(ErrorCode.PEER_GONE, `TLS connect to ${where} failed: ${err.message}${hint}`, { cause: err, context })
}

function isCertificateError(err: NodeJS.ErrnoException): boolean {
  const code = err.code ?? ''
  return code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|DEPTH_ZERO|UNTRUSTED/.test(code)
}

export interface AcceptOptions extends TransportOptions {
  /** accept TLS (and, unless `require`, plain) when set; plain only when null */
  tls?: TlsConfig | null
  /** give up on a peer that sends nothing, or does not finish the TLS handshake, for this long (default 10 s) */
  handshakeTimeoutMs?: number
}

/**
 * Takes one accepted socket and returns its `FrameTransport` once the peer's
 * first bytes show how it speaks: a TLS ClientHello is answered as a TLS
 * server (the client certificate must verify against `ca`), plain frames are
 * accepted only when TLS is not configured or not required. A refused peer
 * gets an ERROR frame it can read when possible (so its log says why), the
 * socket is closed, nothing reaches the replication session, and the promise
 * rejects with the reason: ERR_HANDSHAKE_REFUSED (TLS required but the peer
 * sent plain frames, or TLS attempted but not configured here),
 * ERR_AUTH_FAILED (the client certificate did not verify), ERR_PEER_GONE or
 * ERR_TIMEOUT.
 */
export function acceptTransport(socket: net.Socket, opts: AcceptOptions = {}): Promise<FrameTransport> {
  const cfg = opts.tls ?? null
  const timeoutMs = opts.handshakeTimeoutMs ?? 10_000
  const host = socket.remoteAddress ?? '?'
  const remote = `${host.includes(':') ? `[${host}]` : host}:${socket.remotePort ?? 0}`
  return new Promise((resolve, reject) => {
    let settled = false
    const finish = (err: BlockrepError | null, t?: FrameTransport): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err) reject(err)
      else resolve(t as FrameTransport)
    }
    const timer = setTimeout(() => {
      socket.destroy()
      finish(new BlockrepError(ErrorCode.TIMEOUT, `${remote} sent no handshake within ${timeoutMs} ms`, { context: { remote } }))
    }, timeoutMs)
    const early = (err?: Error): void => {
      finish(new BlockrepError(ErrorCode.PEER_GONE, `${remote} closed the connection before its handshake${err ? `: ${err.message}` : ''}`, { cause: err, context: { remote } }))
    }
    const closedEarly = (): void => early()
    socket.once('error', early)
    socket.once('close', closedEarly)
    socket.once('data', (chunk: Buffer) => {
      socket.pause()
      socket.unshift(chunk)
      socket.off('error', early)
      socket.off('close', closedEarly)
      const wantsTls = chunk[0] === TLS_HANDSHAKE_RECORD
      if (!wantsTls) {
        if (cfg?.require) {
          refusePlain(socket, `this node requires TLS on the replication link (tls.require) and ${remote} connected without it`, remote, finish)
          return
        }
        const t = new FrameTransport(socket, opts)
        // paused above to put the first chunk back; the transport reads from here
        socket.resume()
        finish(null, t)
        return
      }
      if (!cfg) {
        socket.destroy()
        finish(new BlockrepError(ErrorCode.HANDSHAKE_REFUSED, `${remote} started a TLS handshake but this node has no tls configured`, { context: { remote } }))
        return
      }
      serveTls(socket, cfg, remote, opts, finish)
    })
  })
}

function refusePlain(socket: net.Socket, why: string, remote: string, finish: (err: BlockrepError) => void): void {
  const err = new BlockrepError(ErrorCode.HANDSHAKE_REFUSED, why, { context: { remote } })
  const msg: ErrorMsg = { type: 'ERROR', code: err.code, message: why.slice(0, MAX_TEXT_LENGTH) }
  socket.resume()
  socket.on('error', () => {})
  socket.end(encodeFrame(msg)[0])
  setTimeout(() => socket.destroy(), 2000).unref()
  finish(err)
}

function serveTls(socket: net.Socket, cfg: TlsConfig, remote: string, opts: AcceptOptions, finish: (err: BlockrepError | null, t?: FrameTransport) => void): void {
  // one tls.Server per connection: its events then belong to this socket alone
  const server = tls.createServer({
    cert: cfg.cert,
    key: cfg.key,
    ca: cfg.ca,
    requestCert: true,
    // checked below, so the refusal can say why
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
  })
  server.once('tlsClientError', (err: NodeJS.ErrnoException) => {
    socket.destroy()
    finish(new BlockrepError(ErrorCode.PEER_GONE, `TLS handshake with ${remote} failed: ${err.message}`, { cause: err, context: { remote, tlsCode: err.code } }))
  })
  server.once('secureConnection', (ts: tls.TLSSocket) => {
    const t = new FrameTransport(ts, opts)
    if (!ts.authorized) {
      const why = ts.authorizationError ? String(ts.authorizationError) : 'no certificate presented'
      const err = new BlockrepError(ErrorCode.AUTH_FAILED, `TLS: the client certificate of ${remote} was rejected: ${why}`, { context: { remote, reason: why } })
      void t.close(err).catch(() => {})
      finish(err)
      return
    }
    finish(null, t)
  })
  server.emit('connection', socket)
}
