import { Option } from 'commander'
import type { Command } from 'commander'
import { splitHostPort } from '../client/address.js'
import { CenterClient } from '../client/center-client.js'
import { NbdProxy } from '../client/nbd-proxy.js'
import { ProxyAdminServer } from '../client/proxy-admin.js'
import { BlockrepError } from '../util/errors.js'
import { createLogger } from '../util/log.js'
import { parseSize } from '../util/size.js'

interface ProxyFlags {
  center: string
  volume: string
  listen: string
  /** commander reads `--no-path-retry N` as the negation of "path-retry": true when not given */
  pathRetry: string | boolean
  retryIntervalMs: string
  queueIfNoPath?: boolean
  maxQueuedBytes: string
  connectTimeoutMs: string
  admin?: string
  centerTransport: 'poll' | 'sse'
  logLevel?: string
}

const DEFAULT_NO_PATH_RETRY = 60

/** `--no-path-retry`: a count, "fail" (0) or "queue" (forever), as no_path_retry in multipath.conf. */
export function parseNoPathRetry(v: string | boolean, queueIfNoPath: boolean): number {
  if (queueIfNoPath) return Infinity
  if (v === true || v === false) return DEFAULT_NO_PATH_RETRY
  if (v === 'fail') return 0
  if (v === 'queue') return Infinity
  if (!/^\d+$/.test(v)) throw new BlockrepError('ERR_USAGE', `--no-path-retry: expected a whole number, "fail" or "queue", got ${JSON.stringify(v)}`)
  return Number(v)
}

function positiveMs(v: string, field: string): number {
  if (!/^\d+$/.test(v) || Number(v) <= 0) throw new BlockrepError('ERR_USAGE', `${field}: expected milliseconds > 0, got ${JSON.stringify(v)}`)
  return Number(v)
}

/** `blockrep nbd-proxy`: a local NBD export that follows the configuration center through failovers. */
export function register(program: Command): void {
  program
    .command('nbd-proxy')
    .description('serve a volume over NBD locally, forwarding to whichever node the configuration center names primary; requests wait in order through a failover')
    .requiredOption('--center <urls>', 'configuration center URL(s), comma-separated, tried in turn (http://HOST:PORT or HOST:PORT)')
    .requiredOption('--volume <name>', 'volume name in the configuration center (also the export name)')
    .requiredOption('--listen <host:port>', 'where to serve NBD (port 0: any free port, printed in the log)')
    .option('--no-path-retry <n>', `retry intervals without a primary before queued requests fail with EIO: a number, "fail" (at once) or "queue" (forever) (default: ${DEFAULT_NO_PATH_RETRY})`)
    .option('--retry-interval-ms <ms>', 'interval between reconnection attempts (and the unit of --no-path-retry)', '1000')
    .option('--queue-if-no-path', 'queue forever while no primary answers (as --no-path-retry queue)')
    .option('--max-queued-bytes <size>', 'stop reading from clients while queued requests hold this much', '64M')
    .option('--connect-timeout-ms <ms>', 'bound on connecting to a primary and its NBD handshake', '3000')
    .option('--admin <host:port>', 'serve GET /status and GET /metrics here')
    .addOption(new Option('--center-transport <kind>', 'how to follow the center').choices(['poll', 'sse']).default('poll'))
    .option('--log-level <level>', 'log level (env BLOCKREP_LOG_LEVEL overrides)')
    .action(async (flags: ProxyFlags) => {
      const urls = flags.center.split(',').map(s => s.trim()).filter(s => s !== '')
      if (urls.length === 0) throw new BlockrepError('ERR_USAGE', '--center: no URL given')
      const [host, port] = splitHostPort(flags.listen, '--listen', { allowPortZero: true })
      const admin = flags.admin === undefined ? null : splitHostPort(flags.admin, '--admin', { allowPortZero: true })
      const noPathRetry = parseNoPathRetry(flags.pathRetry, flags.queueIfNoPath === true)
      const retryIntervalMs = positiveMs(flags.retryIntervalMs, '--retry-interval-ms')
      const connectTimeoutMs = positiveMs(flags.connectTimeoutMs, '--connect-timeout-ms')
      const maxQueuedBytes = parseSize(flags.maxQueuedBytes, { field: '--max-queued-bytes', code: 'ERR_USAGE' })
      if (maxQueuedBytes <= 0) throw new BlockrepError('ERR_USAGE', '--max-queued-bytes: must be more than 0')
      const log = createLogger({ level: flags.logLevel ?? null }).child({ component: 'nbd-proxy' })
      const center = new CenterClient({ urls, volume: flags.volume, log, transport: flags.centerTransport })
      const proxy = new NbdProxy({ center, listen: { host, port }, noPathRetry, retryIntervalMs, maxQueuedBytes, connectTimeoutMs, log })
      let adminServer: ProxyAdminServer | null = null
      let stopping = false
      const stopped = new Promise<void>(resolve => {
        const stop = (signal: string): void => {
          if (stopping) return
          stopping = true
          log.info({ signal }, 'stopping')
          resolve()
        }
        process.once('SIGTERM', () => stop('SIGTERM'))
        process.once('SIGINT', () => stop('SIGINT'))
      })
      // the proxy's own timers are unref'd: hold the process open until a signal
      const keepAlive = setInterval(() => {}, 1 << 30)
      try {
        if (admin !== null) {
          adminServer = new ProxyAdminServer(() => proxy.status(), log)
          await adminServer.listen(admin[1], admin[0])
        }
        await Promise.race([proxy.start(), stopped])
        await stopped
      } finally {
        clearInterval(keepAlive)
        await proxy.close()
        await adminServer?.close()
      }
    })
}
