import { BlockrepError } from './errors.js'
import type { ErrorCode } from './errors.js'

/**
 * Byte sizes for configuration and the CLI. Units are binary (K = 1024):
 * "512", "512B", "512K", "64M", "4G", "1T", "1.5G", also "64MiB"/"64MB" and
 * lower case. The result must be a whole number of bytes.
 */
const UNITS = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 } as const
type Unit = keyof typeof UNITS

const SIZE_RE = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])(?:i?b)?|b)?\s*$/i

export interface ParseSizeOptions {
  /** named in the error message, e.g. "tunables.journalSize" or "--size" */
  field?: string
  /** error code to throw: ERR_CONFIG (default) for config files, ERR_USAGE for CLI flags */
  code?: Extract<ErrorCode, 'ERR_CONFIG' | 'ERR_USAGE'>
}

/**
 * Parses a size such as "64M" into bytes. Numbers are taken as bytes and must
 * be non-negative safe integers. Throws BlockrepError (ERR_CONFIG unless
 * `opts.code` says otherwise) naming `opts.field`.
 */
export function parseSize(input: string | number, opts: ParseSizeOptions = {}): number {
  const field = opts.field ?? 'size'
  const code = opts.code ?? 'ERR_CONFIG'
  const fail = (why: string): never => {
    throw new BlockrepError(code, `${field}: ${why}, got ${JSON.stringify(input)}`, {
      context: { field, value: input },
    })
  }
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) fail('expected a whole number of bytes ≥ 0')
    return input
  }
  if (typeof input !== 'string') return fail('expected a size like "4096", "512K", "64M", "4G"')
  const m = SIZE_RE.exec(input)
  if (m === null) return fail('expected a size like "4096", "512K", "64M", "4G"')
  const digits = m[1] ?? ''
  const unit = (m[2] ?? '').toUpperCase() as Unit
  const bytes = Number(digits) * UNITS[unit]
  if (!Number.isSafeInteger(bytes)) {
    fail(Number.isInteger(bytes) ? 'too large' : 'not a whole number of bytes')
  }
  return bytes
}

const HUMAN = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const

/**
 * Formats bytes for people: "0 B", "512 B", "4.0 KiB", "1.50 GiB" (three
 * significant digits from KiB up). Negative values keep their sign.
 */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes)
  const sign = bytes < 0 ? '-' : ''
  let v = Math.abs(bytes)
  let i = 0
  while (v >= 1024 && i < HUMAN.length - 1) {
    v /= 1024
    i++
  }
  if (i === 0) return `${sign}${Math.round(v)} B`
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2
  return `${sign}${v.toFixed(digits)} ${HUMAN[i]}`
}

/** A byte rate for people: "12.3 MiB/s". */
export function formatRate(bytesPerSec: number): string {
  return `${formatBytes(bytesPerSec)}/s`
}

/**
 * The shortest exact form `parseSize` reads back: "64M", "4G", "4097".
 * For writing defaults into docs and config dumps.
 */
export function formatSizeExact(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`not a size: ${bytes}`)
  if (bytes === 0) return '0'
  for (const unit of ['P', 'T', 'G', 'M', 'K'] as const) {
    if (bytes % UNITS[unit] === 0) return `${bytes / UNITS[unit]}${unit}`
  }
  return String(bytes)
}
