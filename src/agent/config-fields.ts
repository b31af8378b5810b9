import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { BlockrepError } from '../util/errors.js'

/**
 * Building blocks of config validation: address parsing, and a Checker that
 * collects every problem with its field path instead of stopping at the first.
 */

export interface Endpoint {
  host: string
  port: number
}

const HOST_RE = /^[A-Za-z0-9._-]+$/

/**
 * Parses "host:port" or "[v6addr]:port". Port 0 (pick any) only with
 * `allowPortZero`. Throws BlockrepError(code, default ERR_CONFIG) naming `field`.
 */
export function parseHostPort(
  input: unknown,
  field: string,
  opts: { allowPortZero?: boolean; code?: 'ERR_CONFIG' | 'ERR_USAGE' } = {},
): Endpoint {
  const fail = (why: string): never => {
    throw new BlockrepError(opts.code ?? 'ERR_CONFIG', `${field}: ${why}, got ${JSON.stringify(input)}`, {
      context: { field, value: input },
    })
  }
  if (typeof input !== 'string') return fail('expected "host:port"')
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(input) ?? /^([^:[\]\s]+):(\d{1,5})$/.exec(input)
  if (m === null) {
    return fail(input.split(':').length > 2 ? 'expected "host:port" (IPv6 addresses in brackets: "[::1]:7800")' : 'expected "host:port"')
  }
  const host = m[1] as string
  const port = Number(m[2])
  if (!host.includes(':') && !HOST_RE.test(host)) fail('invalid host name')
  if (port > 65535 || (port === 0 && opts.allowPortZero !== true)) fail('port out of range')
  return { host, port }
}

/** "host:port", with brackets around IPv6 addresses. */
export function formatHostPort(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`
}

/** One problem found in a config, by field path (`peers[1].address`). */
export interface Issue {
  path: string
  message: string
}

/** Typed field readers that record an Issue and return the default instead of throwing. */
export class Checker {
  readonly issues: Issue[] = []

  add(path: string, message: string): void {
    this.issues.push({ path, message })
  }

  /** Runs `fn`, turning a thrown ERR_CONFIG (from parseSize/parseHostPort) into an issue. */
  try<T>(path: string, fn: () => T): T | undefined {
    try {
      return fn()
    } catch (err) {
      if (err instanceof BlockrepError) {
        this.add(path, err.message.startsWith(`${path}: `) ? err.message.slice(path.length + 2) : err.message)
        return undefined
      }
      throw err
    }
  }

  object(v: unknown, path: string, keys: readonly string[]): Record<string, unknown> | undefined {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      this.add(path === '' ? '(top level)' : path, `expected an object, got ${describe(v)}`)
      return undefined
    }
    const rec = v as Record<string, unknown>
    for (const k of Object.keys(rec)) {
      if (!keys.includes(k)) {
        const hint = suggest(k, keys)
        this.add(join(path, k), `unknown field${hint === null ? '' : ` (did you mean "${hint}"?)`}`)
      }
    }
    return rec
  }

  string(v: unknown, path: string, required: boolean): string | undefined {
    if (v === undefined || v === null) {
      if (required) this.add(path, 'required')
      return undefined
    }
    if (typeof v !== 'string' || v.length === 0) {
      this.add(path, `expected a non-empty string, got ${describe(v)}`)
      return undefined
    }
    return v
  }

  oneOf<T extends string>(v: unknown, path: string, choices: readonly T[], dflt: T): T {
    if (v === undefined) return dflt
    if (typeof v === 'string' && (choices as readonly string[]).includes(v)) return v as T
    this.add(path, `expected one of ${choices.map(c => `"${c}"`).join(', ')}, got ${describe(v)}`)
    return dflt
  }

  int(v: unknown, path: string, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    if (v === undefined) return dflt
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      this.add(path, `expected an integer ${rangeText(min, max)}, got ${describe(v)}`)
      return dflt
    }
    return v
  }

  number(v: unknown, path: string, dflt: number, ok: (n: number) => boolean, what: string): number {
    if (v === undefined) return dflt
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) {
      this.add(path, `expected ${what}, got ${describe(v)}`)
      return dflt
    }
    return v
  }

  bool(v: unknown, path: string, dflt: boolean): boolean {
    if (v === undefined) return dflt
    if (typeof v !== 'boolean') {
      this.add(path, `expected true or false, got ${describe(v)}`)
      return dflt
    }
    return v
  }

  endpoint(v: unknown, path: string, dflt: Endpoint | null, allowPortZero: boolean): Endpoint | null {
    if (v === undefined) return dflt
    if (v === null) return null
    return this.try(path, () => parseHostPort(v, path, { allowPortZero })) ?? dflt
  }

  /** A value given inline or in a file (`<key>` or `<key>File`), never both. */
  secretValue(rec: Record<string, unknown>, key: string, baseDir: string): string | null {
    const inline = rec[key]
    const fileKey = `${key}File`
    const file = rec[fileKey]
    if (inline !== undefined && inline !== null && file !== undefined && file !== null) {
      this.add(key, `give ${key} or ${fileKey}, not both`)
      return null
    }
    if (file !== undefined && file !== null) {
      const p = this.string(file, fileKey, false)
      if (p === undefined) return null
      const abs = resolve(baseDir, p)
      let text: string
      try {
        text = readFileSync(abs, 'utf8')
      } catch (err) {
        this.add(fileKey, `cannot read ${abs}: ${(err as Error).message}`)
        return null
      }
      const v = text.replace(/\r?\n$/, '')
      if (v.length === 0) {
        this.add(fileKey, `${abs} is empty`)
        return null
      }
      return v
    }
    return this.string(inline, key, false) ?? null
  }
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`
}

function rangeText(min: number, max: number): string {
  return max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`
}

/** A value as an error message shows it. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object' && v !== null) return 'an object'
  return JSON.stringify(v)
}

/** The closest known key (case-insensitive match or edit distance ≤ 2), for "did you mean". */
function suggest(key: string, known: readonly string[]): string | null {
  let best: string | null = null
  let bestD = 3
  for (const k of known) {
    if (k.toLowerCase() === key.toLowerCase()) return k
    const dist = editDistance(key, k)
    if (dist < bestD) {
      bestD = dist
      best = k
    }
  }
  return best
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length] as number
}
