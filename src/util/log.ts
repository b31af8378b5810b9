import { pino } from 'pino'
import type { DestinationStream, Logger as PinoLogger, LevelWithSilent } from 'pino'
import { BlockrepError } from './errors.js'

/** The structured logger every module takes as a parameter. */
export type Logger = PinoLogger
export type LogLevel = LevelWithSilent

export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** The environment variable that overrides the configured level. */
export const LOG_LEVEL_ENV = 'BLOCKREP_LOG_LEVEL'

export function isLogLevel(v: unknown): v is LogLevel {
  return typeof v === 'string' && (LOG_LEVELS as readonly string[]).includes(v)
}

/**
 * The effective level: BLOCKREP_LOG_LEVEL when set (so an operator can turn on
 * debug without editing the config), else the configured level, else "info".
 * Throws ERR_CONFIG on an unknown level, naming where it came from.
 */
export function resolveLogLevel(configured?: string | null, env: NodeJS.ProcessEnv = process.env): LogLevel {
  const fromEnv = env[LOG_LEVEL_ENV]
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!isLogLevel(fromEnv)) {
      throw new BlockrepError('ERR_CONFIG', `${LOG_LEVEL_ENV}: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(fromEnv)}`)
    }
    return fromEnv
  }
  if (configured === undefined || configured === null) return 'info'
  if (!isLogLevel(configured)) {
    throw new BlockrepError('ERR_CONFIG', `log.level: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(configured)}`)
  }
  return configured
}

export interface CreateLoggerOptions {
  /** configured level; BLOCKREP_LOG_LEVEL overrides it (see resolveLogLevel) */
  level?: string | null
  /** bound into every line as `node` */
  node?: string
  /** where JSON lines go; default: stderr (fd 2), synchronous so nothing is lost on exit */
  destination?: DestinationStream
  /** for tests: the environment to read BLOCKREP_LOG_LEVEL from */
  env?: NodeJS.ProcessEnv
}

/**
 * A pino logger writing one JSON object per line to stderr by default
 * (stdout stays free for command output). Timestamps are ISO-8601.
 */
export function createLogger(opts: CreateLoggerOptions = {}): Logger {
  const level = resolveLogLevel(opts.level, opts.env)
  const dest = opts.destination ?? pino.destination({ dest: 2, sync: true })
  const base: Record<string, unknown> = { pid: process.pid }
  if (opts.node !== undefined) base.node = opts.node
  return pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime }, dest)
}

/** A child logger for one component, e.g. `componentLogger(log, 'replication', 'node-a')`; give `node` only when the parent has none (pino would repeat the key). */
export function componentLogger(parent: Logger, component: string, node?: string): Logger {
  return parent.child(node === undefined ? { component } : { component, node })
}

/** A logger that drops everything (tests, library use without logging). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
