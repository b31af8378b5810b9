import { readFileSync } from 'node:fs'
import { dirname, extname, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { BlockrepError } from '../util/errors.js'
import { isLogLevel, LOG_LEVELS } from '../util/log.js'
import type { LogLevel } from '../util/log.js'
import { Checker, describe, formatHostPort, parseHostPort } from '../agent/config-fields.js'

/**
 * The controller configuration (`blockrep controller --config FILE`, JSON or
 * YAML). `parseControllerConfig` checks every field, reports every problem at
 * once with its path, and fills in the defaults. docs/controller.md describes
 * each field.
 */
export interface ControllerNodeConfig {
  node: string
  site: string
  /** "host:port" of the agent's admin API */
  admin: string
  /** "host:port" of the agent's NBD export */
  nbd: string
  adminToken: string | null
  /** never promoted automatically */
  noFailover: boolean
}

export interface ControllerVolumeConfig {
  id: string
  nodes: ControllerNodeConfig[]
}

export type AlarmTarget = { webhook: string } | { command: string } | null

export interface ControllerConfig {
  /** the controller's name; its instance id is `<name>/<random>` */
  name: string
  /** "host:port" of the configuration center and API (port 0: any) */
  listen: string
  heartbeatMs: number
  timeoutMs: number
  leaseMs: number
  siteThreshold: number
  alarm: AlarmTarget
  /** a file path (absolute) or a store URL (`etcd://…`) */
  store: string
  maxLagSeqs: number | null
  adminToken: string | null
  log: { level: LogLevel }
  volumes: ControllerVolumeConfig[]
  source: string | null
}

export const DEFAULT_HEARTBEAT_MS = 500
export const DEFAULT_STORE_FILE = 'controller-state.json'

const TOP_KEYS = ['name', 'listen', 'heartbeatMs', 'timeoutMs', 'leaseMs', 'siteThreshold', 'alarm', 'store', 'maxLagSeqs', 'adminToken', 'adminTokenFile', 'log', 'volumes'] as const
const VOLUME_KEYS = ['id', 'nodes'] as const
const NODE_KEYS = ['node', 'site', 'admin', 'nbd', 'adminToken', 'adminTokenFile', 'noFailover'] as const
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

export function loadControllerConfig(path: string): ControllerConfig {
  const file = resolve(path)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new BlockrepError('ERR_CONFIG', `cannot read controller config ${file}: ${(err as Error).message}`, { cause: err, context: { file } })
  }
  let obj: unknown
  try {
    obj = extname(file).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text, { uniqueKeys: true })
  } catch (err) {
    throw new BlockrepError('ERR_CONFIG', `cannot parse controller config ${file}: ${(err as Error).message}`, { cause: err, context: { file } })
  }
  return parseInternal(obj, dirname(file), file)
}

/** Validates a parsed config; relative paths resolve against `baseDir`. */
export function parseControllerConfig(obj: unknown, baseDir: string): ControllerConfig {
  return parseInternal(obj, resolve(baseDir), null)
}

function parseInternal(obj: unknown, baseDir: string, source: string | null): ControllerConfig {
  const c = new Checker()
  const top = c.object(obj, '', TOP_KEYS) ?? {}
  const name = c.string(top.name, 'name', false) ?? 'controller'
  if (!ID_RE.test(name)) c.add('name', `expected 1-64 letters, digits, ".", "_", "-", got ${describe(top.name)}`)
  const listenE = top.listen === undefined ? (c.add('listen', 'required: "host:port" of the controller API'), null) : c.endpoint(top.listen, 'listen', null, true)
  const heartbeatMs = c.int(top.heartbeatMs, 'heartbeatMs', DEFAULT_HEARTBEAT_MS, 10, 600_000)
  const timeoutMs = c.int(top.timeoutMs, 'timeoutMs', 3 * heartbeatMs, 10, 3_600_000)
  if (timeoutMs <= heartbeatMs) c.add('timeoutMs', `must be greater than heartbeatMs (${heartbeatMs}): a node gets at least one heartbeat before it counts as down`)
  const leaseMs = c.int(top.leaseMs, 'leaseMs', 4 * heartbeatMs, 10, 3_600_000)
  if (leaseMs < 2 * heartbeatMs) c.add('leaseMs', `must be at least 2 × heartbeatMs (${2 * heartbeatMs}): the lease is renewed every heartbeat and must outlive one lost renewal`)
  const siteThreshold = c.number(top.siteThreshold, 'siteThreshold', 0.5, n => n > 0 && n <= 1, 'a number above 0 and at most 1 (a site is available while at least this fraction of its nodes answer)')
  const maxLagSeqs = top.maxLagSeqs === undefined || top.maxLagSeqs === null ? null : c.int(top.maxLagSeqs, 'maxLagSeqs', 0, 0)
  const adminToken = c.secretValue(top, 'adminToken', baseDir)
  const alarm = parseAlarm(c, top.alarm)

  let store = resolve(baseDir, DEFAULT_STORE_FILE)
  if (top.store !== undefined && top.store !== null) {
    const s = c.string(top.store, 'store', false)
    if (s !== undefined) {
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) store = s
      else if (s.startsWith('file:')) store = resolve(baseDir, s.slice(5))
      else store = resolve(baseDir, s)
    }
  }

  let level: LogLevel = 'info'
  if (top.log !== undefined && top.log !== null) {
    const rec = c.object(top.log, 'log', ['level'])
    if (rec?.level !== undefined) {
      if (isLogLevel(rec.level)) level = rec.level
      else c.add('log.level', `expected one of ${LOG_LEVELS.join(', ')}, got ${describe(rec.level)}`)
    }
  }

  const volumes = parseVolumes(c, top.volumes, baseDir)

  if (c.issues.length > 0) {
    const lines = c.issues.map(i => `  - ${i.path}: ${i.message}`).join('\n')
    throw new BlockrepError('ERR_CONFIG', `invalid ${source === null ? 'controller config' : `controller config ${source}`}:\n${lines}`, { context: { file: source, issues: c.issues } })
  }
  return {
    name,
    listen: listenE === null ? '' : formatHostPort(listenE),
    heartbeatMs,
    timeoutMs,
    leaseMs,
    siteThreshold,
    alarm,
    store,
    maxLagSeqs,
    adminToken,
    log: { level },
    volumes,
    source,
  }
}

function parseAlarm(c: Checker, v: unknown): AlarmTarget {
  if (v === undefined || v === null) return null
  if (typeof v === 'string') {
    if (v.trim() === '') {
      c.add('alarm', 'expected a webhook URL or a command, got ""')
      return null
    }
    if (/^https?:\/\//i.test(v)) return { webhook: checkUrl(c, v) }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) {
      c.add('alarm', `a webhook must be an http:// or https:// URL, got ${describe(v)}`)
      return null
    }
    return { command: v }
  }
  const rec = c.object(v, 'alarm', ['webhook', 'command'])
  if (rec === undefined) return null
  if ((rec.webhook === undefined) === (rec.command === undefined)) {
    c.add('alarm', 'give exactly one of "webhook" (an http(s) URL) or "command"')
    return null
  }
  if (rec.webhook !== undefined) {
    const u = c.string(rec.webhook, 'alarm.webhook', true)
    if (u !== undefined && !/^https?:\/\//i.test(u)) c.add('alarm.webhook', `expected an http:// or https:// URL, got ${describe(u)}`)
    return u === undefined ? null : { webhook: checkUrl(c, u) }
  }
  const cmd = c.string(rec.command, 'alarm.command', true)
  return cmd === undefined ? null : { command: cmd }
}

function checkUrl(c: Checker, u: string): string {
  try {
    new URL(u)
  } catch {
    c.add('alarm', `not a valid URL: ${describe(u)}`)
  }
  return u
}

function parseVolumes(c: Checker, v: unknown, baseDir: string): ControllerVolumeConfig[] {
  if (v === undefined || v === null) {
    c.add('volumes', 'required: the volumes to watch, [{ "id", "nodes": [...] }]')
    return []
  }
  if (!Array.isArray(v) || v.length === 0) {
    c.add('volumes', `expected a non-empty list, got ${describe(v)}`)
    return []
  }
  const out: ControllerVolumeConfig[] = []
  const ids = new Set<string>()
  const admins = new Map<string, string>()
  v.forEach((raw: unknown, i: number) => {
    const path = `volumes[${i}]`
    const rec = c.object(raw, path, VOLUME_KEYS)
    if (rec === undefined) return
    const id = c.string(rec.id, `${path}.id`, true)
    if (id !== undefined && !ID_RE.test(id)) c.add(`${path}.id`, `expected 1-64 letters, digits, ".", "_", "-", got ${describe(id)}`)
    else if (id !== undefined && ids.has(id)) c.add(`${path}.id`, `duplicate volume "${id}"`)
    if (id !== undefined) ids.add(id)
    if (!Array.isArray(rec.nodes) || rec.nodes.length === 0) {
      c.add(`${path}.nodes`, `expected a non-empty list of nodes, got ${describe(rec.nodes)}`)
      return
    }
    const nodes: ControllerNodeConfig[] = []
    const seen = new Set<string>()
    rec.nodes.forEach((rn: unknown, j: number) => {
      const np = `${path}.nodes[${j}]`
      const n = c.object(rn, np, NODE_KEYS)
      if (n === undefined) return
      const node = c.string(n.node, `${np}.node`, true)
      if (node !== undefined && !ID_RE.test(node)) c.add(`${np}.node`, `not a valid node id: ${describe(node)}`)
      else if (node !== undefined && seen.has(node)) c.add(`${np}.node`, `duplicate node "${node}" in volume ${id ?? i}`)
      if (node !== undefined) seen.add(node)
      const site = c.string(n.site, `${np}.site`, true)
      const admin = n.admin === undefined ? (c.add(`${np}.admin`, 'required: "host:port" of the agent admin API'), undefined) : c.try(`${np}.admin`, () => parseHostPort(n.admin, `${np}.admin`))
      const nbd = n.nbd === undefined ? (c.add(`${np}.nbd`, 'required: "host:port" of the agent NBD export'), undefined) : c.try(`${np}.nbd`, () => parseHostPort(n.nbd, `${np}.nbd`))
      if (admin !== undefined) {
        const key = formatHostPort(admin)
        const other = admins.get(key)
        if (other !== undefined) c.add(`${np}.admin`, `same admin address as ${other} (${key}): one agent serves one node of one volume`)
        admins.set(key, np)
      }
      const adminToken = c.secretValue(n, 'adminToken', baseDir)
      const noFailover = c.bool(n.noFailover, `${np}.noFailover`, false)
      if (node !== undefined && site !== undefined && admin !== undefined && nbd !== undefined) {
        nodes.push({ node, site, admin: formatHostPort(admin), nbd: formatHostPort(nbd), adminToken, noFailover })
      }
    })
    if (id !== undefined) out.push({ id, nodes })
  })
  return out
}
