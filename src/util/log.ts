import { pino } from 'pino'
import type { DestinationStream, Logger as PinoLogger, LevelWithSilent } from 'pino'
import { PinoPretty } from 'pino-pretty'
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

/** How log lines look: `json` (one object per line, for machines) or `pretty` (one readable line, for people). */
export type LogFormat = 'json' | 'pretty'
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty']

/** The environment variable that overrides the configured format. */
export const LOG_FORMAT_ENV = 'BLOCKREP_LOG_FORMAT'

export function isLogFormat(v: unknown): v is LogFormat {
  return typeof v === 'string' && (LOG_FORMATS as readonly string[]).includes(v)
}

/**
 * The effective format: the command line's `--log` first, then
 * BLOCKREP_LOG_FORMAT, then the config's `log.format`, else `pretty` when
 * stderr is a terminal (a person is watching) and `json` otherwise (a
 * supervisor or a log shipper is reading). Throws ERR_CONFIG on an unknown value.
 */
export function resolveLogFormat(
  o: { flag?: string | null; configured?: string | null; isTTY?: boolean; env?: NodeJS.ProcessEnv } = {},
): LogFormat {
  const env = o.env ?? process.env
  const candidates: [string | null | undefined, string][] = [
    [o.flag, '--log'],
    [env[LOG_FORMAT_ENV] === '' ? undefined : env[LOG_FORMAT_ENV], LOG_FORMAT_ENV],
    [o.configured, 'log.format'],
  ]
  for (const [v, where] of candidates) {
    if (v === undefined || v === null) continue
    if (!isLogFormat(v)) throw new BlockrepError('ERR_CONFIG', `${where}: expected one of ${LOG_FORMATS.join(', ')}, got ${JSON.stringify(v)}`)
    return v
  }
  return (o.isTTY ?? process.stderr.isTTY === true) ? 'pretty' : 'json'
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
  /** default json; `pretty` writes one readable line per event (pino-pretty), colours when `colorize` */
  format?: LogFormat
  /** pretty only; default: whether stderr is a terminal */
  colorize?: boolean
}

/**
 * A pino logger writing to stderr by default (stdout stays free for command
 * output): one JSON object per line with ISO-8601 timestamps, or with
 * `format: 'pretty'` one readable line per event
 * (`[12:00:01.123] INFO (a/replication): link up  peer=b`), written
 * synchronously as well so nothing is lost on exit.
 */
export function createLogger(opts: CreateLoggerOptions = {}): Logger {
  const level = resolveLogLevel(opts.level, opts.env)
  const dest = opts.format === 'pretty'
    ? PinoPretty({
      destination: (opts.destination as NodeJS.WritableStream | undefined) ?? 2,
      sync: true,
      colorize: opts.colorize ?? process.stderr.isTTY === true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,node,component',
      messageFormat: '{if node}{node}{end}{if component}/{component}{end}: {msg}',
      singleLine: true,
    })
    : (opts.destination ?? pino.destination({ dest: 2, sync: true }))
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
