/**
 * The etcd store's URL, `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]` in the
 * controller's `store` setting, and `openEtcdStore` for the store factory
 * (src/control/store-factory.ts registers it for the `etcd` scheme).
 * docs/etcd.md.
 */
import { BlockrepError, ErrorCode } from '../util/errors.js'
import type { Logger } from '../util/log.js'
import type { ControlStore } from './store.js'
import { EtcdStore } from './store-etcd.js'
import { DEFAULT_ETCD_PREFIX } from './store-etcd-keys.js'

export type StoreUrl =
  | { kind: 'file'; path: string }
  | { kind: 'etcd'; hosts: string[]; prefix: string }

/**
 * Parses a store setting. `etcd://h1:2379,h2:2379,h3:2379` (IPv6 as
 * `[::1]:2379`), optionally followed by a key prefix path (`/blockrep/` by
 * default); `file://PATH` or any string without a scheme is a file path.
 * Throws ERR_CONFIG naming what was wrong.
 */
export function parseStoreUrl(url: string): StoreUrl {
  if (typeof url !== 'string' || url.trim() === '') throw bad(url, 'expected a file path or etcd://HOST:PORT[,HOST:PORT…]')
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(url)
  if (scheme === null) return { kind: 'file', path: url }
  const name = scheme[1]!.toLowerCase()
  const rest = url.slice(scheme[0].length)
  if (name === 'file') {
    if (rest === '') throw bad(url, 'file:// needs a path')
    return { kind: 'file', path: rest }
  }
  if (name !== 'etcd') throw bad(url, `unknown scheme "${scheme[1]}://" (expected etcd:// or a file path)`)
  const slash = rest.indexOf('/')
  const hostPart = slash === -1 ? rest : rest.slice(0, slash)
  const prefix = slash === -1 || rest.slice(slash) === '/' ? DEFAULT_ETCD_PREFIX : rest.slice(slash)
  if (hostPart === '') throw bad(url, 'no etcd host given')
  const hosts = hostPart.split(',').map((h) => parseHostPort(url, h))
  return { kind: 'etcd', hosts, prefix: prefix.endsWith('/') ? prefix : `${prefix}/` }
}

function parseHostPort(url: string, hp: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+):(\d+)$/.exec(hp)
  if (m === null) throw bad(url, `"${hp}" is not HOST:PORT`)
  const port = Number(m[2])
  if (!(port >= 1 && port <= 65535)) throw bad(url, `port ${m[2]} of "${hp}" is out of range (1-65535)`)
  return `${m[1]}:${port}`
}

function bad(url: unknown, why: string): BlockrepError {
  return new BlockrepError(ErrorCode.CONFIG, `store ${JSON.stringify(url)}: ${why}`, { context: { field: 'store' } })
}

export interface OpenEtcdStoreOptions {
  log?: Logger
  /** bound on each store call (default 5000 ms) */
  opTimeoutMs?: number
  /** leadership margin (default ¼ of the campaign TTL, at most 1 s) */
  leaderMarginMs?: number
}

/** Opens the etcd store an `etcd://` URL names; ERR_CONFIG for anything else. */
export async function openEtcdStore(url: string, opts: OpenEtcdStoreOptions = {}): Promise<ControlStore> {
  const parsed = parseStoreUrl(url)
  if (parsed.kind !== 'etcd') throw bad(url, 'not an etcd:// URL')
  return new EtcdStore({ hosts: parsed.hosts, prefix: parsed.prefix, ...opts })
}
