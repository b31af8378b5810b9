import { readFileSync } from 'node:fs'
import { dirname, extname, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { BlockrepError } from '../util/errors.js'
import { isLogFormat, isLogLevel, LOG_FORMATS, LOG_LEVELS } from '../util/log.js'
import type { LogFormat, LogLevel } from '../util/log.js'
import { formatSizeExact, parseSize } from '../util/size.js'
import type { Role } from '../storage/types.js'
import { Checker, describe, formatHostPort, parseHostPort } from './config-fields.js'
import type { Endpoint } from './config-fields.js'
import { parseTls } from './config-tls.js'
import type { TlsSettings } from './config-tls.js'

export { formatHostPort, parseHostPort }
export type { Endpoint }

/**
 * The agent configuration: one JSON or YAML file per node. `parseConfig`
 * validates every field, reports every problem at once with the field's path,
 * fills in the defaults, resolves relative paths against the config file's
 * directory and reads the token and secret files. docs/configuration.md
 * describes each field.
 */

export interface PeerConfig {
  node: string
  address: Endpoint
  protocol: 'sync' | 'async'
}

export type DivergencePolicy = 'discard' | 'keep'

export interface Tunables {
  /** bytes; must match the volume's metadata */
  blockSize: number
  /** bytes of journal ring */
  journalSize: number
  /** bytes in flight per peer */
  windowBytes: number
  /** 0 = sync as soon as a batch is gathered */
  groupCommitMs: number
  maxBatchBytes: number
  /** a bitmap round's gap at most this large is replayed as HEAD_DELTA */
  headDeltaMaxBytes: number
  /** a round must shrink the gap to at most this fraction, or writes are throttled */
  roundShrinkRatio: number
  /** client write rate while throttled; 0 = never throttle */
  throttleWritesMiBps: number
  /** resync (BITMAP/FULL) send rate limit in MiB/s; 0 = unlimited */
  resyncMaxMiBps: number
  checksumResync: boolean
  digestRangeBlocks: number
  reconnectMinMs: number
  reconnectMaxMs: number
  heartbeatMs: number
  peerTimeoutMs: number
  /** failed sends retried this many times before the peer falls back to bitmap tracking */
  retryLimit: number
  /** what a rejoining node does with writes it accepted but never shipped */
  divergencePolicy: DivergencePolicy
  /** under a controller: a lease stops this long before the controller's count ends (clock drift, first grant's delay) */
  leaseMarginMs: number
  /** how long a standby's failsafe confirmation keeps a lease-less primary writable; 0 = the last grant's leaseMs */
  failsafeMs: number
}

/** Fully defaulted and validated; sizes in bytes, durations in ms, paths absolute. */
export interface AgentConfig {
  node: string
  volumeId: string | null
  data: string
  meta: string
  journal: string
  /** initial role; the metadata wins once the volume is initialised */
  role: Role
  /** whether the file set `role` (the agent warns when it disagrees with the metadata) */
  roleGiven: boolean
  /** replication listener; null: no fixed listener (the agent dials its peers) */
  listen: Endpoint | null
  /** admin HTTP API, or null to disable it */
  admin: Endpoint | null
  adminToken: string | null
  /** NBD export, or null */
  nbd: Endpoint | null
  /** shared replication secret (utf-8, ≥ 16 bytes) */
  secret: string
  peers: PeerConfig[]
  /** TLS on the replication link, or null for plain TCP (docs/configuration.md, "tls") */
  tls: TlsSettings | null
  /** format null: chosen at start (pretty on a terminal, JSON otherwise; see resolveLogFormat) */
  log: { level: LogLevel; format: LogFormat | null }
  tunables: Tunables
  /** absolute path of the file it came from, or null */
  source: string | null
}

export const DEFAULT_ADMIN = '127.0.0.1:7800'
export const MIN_SECRET_BYTES = 16

export const DEFAULT_TUNABLES: Readonly<Tunables> = Object.freeze({
  blockSize: 4096,
  journalSize: 256 * 2 ** 20,
  windowBytes: 8 * 2 ** 20,
  groupCommitMs: 0,
  maxBatchBytes: 4 * 2 ** 20,
  headDeltaMaxBytes: 64 * 2 ** 20,
  roundShrinkRatio: 0.5,
  throttleWritesMiBps: 50,
  resyncMaxMiBps: 0,
  checksumResync: false,
  digestRangeBlocks: 256,
  reconnectMinMs: 200,
  reconnectMaxMs: 5000,
  heartbeatMs: 1000,
  peerTimeoutMs: 5000,
  retryLimit: 5,
  divergencePolicy: 'keep',
  leaseMarginMs: 1000,
  failsafeMs: 0,
})

const TOP_KEYS = [
  'node', 'volumeId', 'data', 'meta', 'journal', 'role', 'listen', 'admin', 'adminToken',
  'adminTokenFile', 'nbd', 'secret', 'secretFile', 'peers', 'log', 'tunables', 'tls',
] as const
const PEER_KEYS = ['node', 'address', 'protocol'] as const
const LOG_KEYS = ['level', 'format'] as const
const SIZE_TUNABLES = ['blockSize', 'journalSize', 'windowBytes', 'maxBatchBytes', 'headDeltaMaxBytes'] as const

const NODE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Reads and validates a config file (.json as JSON, anything else as YAML, a superset of JSON). */
export function loadConfig(path: string): AgentConfig {
  const file = resolve(path)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new BlockrepError('ERR_CONFIG', `cannot read config file ${file}: ${(err as Error).message}`, {
      cause: err,
      context: { file },
    })
  }
  let obj: unknown
  try {
    obj = extname(file).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text, { uniqueKeys: true, prettyErrors: true })
  } catch (err) {
    throw new BlockrepError('ERR_CONFIG', `cannot parse config file ${file}: ${(err as Error).message}`, {
      cause: err,
      context: { file },
    })
  }
  return parseConfigInternal(obj, dirname(file), file)
}

/**
 * Validates a config object (already parsed); relative paths resolve against
 * `baseDir`. Throws one BlockrepError(ERR_CONFIG) listing every problem, with
 * `context.issues: {path, message}[]`.
 */
export function parseConfig(obj: unknown, baseDir: string): AgentConfig {
  return parseConfigInternal(obj, resolve(baseDir), null)
}

/** The config with secrets replaced, for logging. */
export function redactConfig(cfg: AgentConfig): Record<string, unknown> {
  return {
    ...cfg,
    adminToken: cfg.adminToken === null ? null : '<redacted>',
    secret: '<redacted>',
    // file names only: certificates are public, the key is not, and neither belongs in a log
    tls: cfg.tls === null ? null : { cert: cfg.tls.certFile, key: cfg.tls.keyFile, ca: cfg.tls.caFile, require: cfg.tls.require, verifyHostname: cfg.tls.verifyHostname },
  }
}

function parseConfigInternal(obj: unknown, baseDir: string, source: string | null): AgentConfig {
  const c = new Checker()
  const top = c.object(obj, '', TOP_KEYS) ?? {}

  const node = c.string(top.node, 'node', true)
  if (node !== undefined && !NODE_ID_RE.test(node)) {
    c.add('node', `expected 1-64 characters of letters, digits, ".", "_", "-" (starting with a letter or digit), got ${describe(node)}`)
  }

  let volumeId: string | null = null
  if (top.volumeId !== undefined && top.volumeId !== null) {
    const v = c.string(top.volumeId, 'volumeId', false)
    if (v !== undefined && !UUID_RE.test(v)) c.add('volumeId', `expected a UUID, got ${describe(v)}`)
    else if (v !== undefined) volumeId = v.toLowerCase()
  }

  const dataRel = c.string(top.data, 'data', true)
  const data = dataRel === undefined ? '' : resolve(baseDir, dataRel)
  const metaRel = c.string(top.meta, 'meta', false)
  const journalRel = c.string(top.journal, 'journal', false)
  const meta = metaRel === undefined ? `${data}.meta` : resolve(baseDir, metaRel)
  const journal = journalRel === undefined ? `${data}.journal` : resolve(baseDir, journalRel)
  if (data !== '' && new Set([data, meta, journal]).size !== 3) c.add('meta', 'data, meta and journal must be three different files')

  const role = c.oneOf(top.role, 'role', ['primary', 'standby'] as const, 'standby')
  const listen = c.endpoint(top.listen, 'listen', null, true)
  const admin = c.endpoint(top.admin, 'admin', parseHostPort(DEFAULT_ADMIN, 'admin'), true)
  const nbd = c.endpoint(top.nbd, 'nbd', null, true)
  const taken = new Map<string, string>()
  for (const [name, e] of [['listen', listen], ['admin', admin], ['nbd', nbd]] as const) {
    if (e === null || e.port === 0) continue
    const key = formatHostPort(e)
    const other = taken.get(key)
    if (other !== undefined) c.add(name, `same address as ${other} (${key})`)
    taken.set(key, name)
  }

  const adminToken = c.secretValue(top, 'adminToken', baseDir)
  const secret = c.secretValue(top, 'secret', baseDir)
  if (secret !== null && Buffer.byteLength(secret) < MIN_SECRET_BYTES) {
    c.add(top.secretFile !== undefined ? 'secretFile' : 'secret', `must be at least ${MIN_SECRET_BYTES} bytes, got ${Buffer.byteLength(secret)}`)
  }

  const peers: PeerConfig[] = []
  if (top.peers !== undefined && top.peers !== null) {
    if (!Array.isArray(top.peers)) {
      c.add('peers', `expected a list, got ${describe(top.peers)}`)
    } else {
      const seen = new Set<string>()
      top.peers.forEach((p: unknown, i: number) => {
        const path = `peers[${i}]`
        const rec = c.object(p, path, PEER_KEYS)
        if (rec === undefined) return
        const pn = c.string(rec.node, `${path}.node`, true)
        if (pn !== undefined && !NODE_ID_RE.test(pn)) c.add(`${path}.node`, `not a valid node id: ${describe(pn)}`)
        else if (pn !== undefined && pn === node) c.add(`${path}.node`, `is this node's own id "${pn}"`)
        else if (pn !== undefined && seen.has(pn)) c.add(`${path}.node`, `duplicate peer "${pn}"`)
        if (pn !== undefined) seen.add(pn)
        const address = rec.address === undefined
          ? (c.add(`${path}.address`, 'required'), undefined)
          : c.try(`${path}.address`, () => parseHostPort(rec.address, `${path}.address`))
        const protocol = c.oneOf(rec.protocol, `${path}.protocol`, ['sync', 'async'] as const, 'sync')
        if (pn !== undefined && address !== undefined) peers.push({ node: pn, address, protocol })
      })
    }
  }
  if (secret === null && top.secret == null && top.secretFile == null) {
    c.add('secret', `required: the shared replication secret, ≥ ${MIN_SECRET_BYTES} bytes (or secretFile)`)
  }

  let level: LogLevel = 'info'
  let format: LogFormat | null = null
  if (top.log !== undefined && top.log !== null) {
    const rec = c.object(top.log, 'log', LOG_KEYS)
    if (rec?.level !== undefined) {
      if (isLogLevel(rec.level)) level = rec.level
      else c.add('log.level', `expected one of ${LOG_LEVELS.join(', ')}, got ${describe(rec.level)}`)
    }
    if (rec?.format !== undefined && rec.format !== null) {
      if (isLogFormat(rec.format)) format = rec.format
      else c.add('log.format', `expected one of ${LOG_FORMATS.join(', ')}, got ${describe(rec.format)}`)
    }
  }

  const tunables = parseTunables(c, top.tunables)
  const tls = parseTls(c, top.tls, baseDir)

  if (c.issues.length > 0) {
    const where = source ?? 'config'
    const lines = c.issues.map(i => `  - ${i.path}: ${i.message}`).join('\n')
    throw new BlockrepError('ERR_CONFIG', `invalid ${source === null ? 'config' : `config file ${source}`}:\n${lines}`, {
      context: { file: where, issues: c.issues },
    })
  }

  return {
    node: node as string,
    volumeId,
    data,
    meta,
    journal,
    role,
    roleGiven: top.role !== undefined && top.role !== null,
    listen,
    admin,
    adminToken,
    nbd,
    secret: secret as string,
    peers,
    tls,
    log: { level, format },
    tunables,
    source,
  }
}

function parseTunables(c: Checker, v: unknown): Tunables {
  const d = DEFAULT_TUNABLES
  if (v === undefined || v === null) return { ...d }
  const rec = c.object(v, 'tunables', Object.keys(d))
  if (rec === undefined) return { ...d }
  const p = (k: string): string => `tunables.${k}`

  const sizes = {} as Record<(typeof SIZE_TUNABLES)[number], number>
  for (const k of SIZE_TUNABLES) {
    const raw = rec[k]
    sizes[k] = raw === undefined ? d[k] : (c.try(p(k), () => parseSize(raw as string | number, { field: p(k) })) ?? d[k])
  }
  const { blockSize, journalSize, windowBytes, maxBatchBytes, headDeltaMaxBytes } = sizes
  const blockSizeOk = blockSize >= 512 && blockSize <= 2 ** 20 && (blockSize & (blockSize - 1)) === 0
  if (rec.blockSize !== undefined && !blockSizeOk) c.add(p('blockSize'), `expected a power of two from 512 to 1M, got ${describe(rec.blockSize)}`)
  if (rec.journalSize !== undefined && journalSize < 2 ** 20) c.add(p('journalSize'), `must be at least 1M, got ${describe(rec.journalSize)}`)
  if (windowBytes < blockSize) c.add(p('windowBytes'), `must be at least blockSize (${formatSizeExact(blockSize)})`)
  if (maxBatchBytes < blockSize) c.add(p('maxBatchBytes'), `must be at least blockSize (${formatSizeExact(blockSize)})`)
  else if (maxBatchBytes > windowBytes) c.add(p('maxBatchBytes'), `must not exceed windowBytes (${formatSizeExact(windowBytes)})`)
  if (maxBatchBytes > journalSize) c.add(p('maxBatchBytes'), `must not exceed journalSize (${formatSizeExact(journalSize)})`)

  const reconnectMinMs = c.int(rec.reconnectMinMs, p('reconnectMinMs'), d.reconnectMinMs, 1)
  const reconnectMaxMs = c.int(rec.reconnectMaxMs, p('reconnectMaxMs'), d.reconnectMaxMs, 1)
  if (reconnectMaxMs < reconnectMinMs) c.add(p('reconnectMaxMs'), `must be at least reconnectMinMs (${reconnectMinMs})`)
  const heartbeatMs = c.int(rec.heartbeatMs, p('heartbeatMs'), d.heartbeatMs, 10)
  const peerTimeoutMs = c.int(rec.peerTimeoutMs, p('peerTimeoutMs'), d.peerTimeoutMs, 10)
  if (peerTimeoutMs <= heartbeatMs) c.add(p('peerTimeoutMs'), `must be greater than heartbeatMs (${heartbeatMs})`)

  return {
    blockSize,
    journalSize,
    windowBytes,
    groupCommitMs: c.int(rec.groupCommitMs, p('groupCommitMs'), d.groupCommitMs, 0, 10_000),
    maxBatchBytes,
    headDeltaMaxBytes,
    roundShrinkRatio: c.number(rec.roundShrinkRatio, p('roundShrinkRatio'), d.roundShrinkRatio, n => n > 0 && n <= 1, 'a number in (0, 1]'),
    throttleWritesMiBps: c.number(rec.throttleWritesMiBps, p('throttleWritesMiBps'), d.throttleWritesMiBps, n => n >= 0, 'a number ≥ 0 (0 = never throttle)'),
    resyncMaxMiBps: c.number(rec.resyncMaxMiBps, p('resyncMaxMiBps'), d.resyncMaxMiBps, n => n >= 0, 'a number ≥ 0 (0 = unlimited)'),
    checksumResync: c.bool(rec.checksumResync, p('checksumResync'), d.checksumResync),
    digestRangeBlocks: c.int(rec.digestRangeBlocks, p('digestRangeBlocks'), d.digestRangeBlocks, 1, 65536),
    reconnectMinMs,
    reconnectMaxMs,
    heartbeatMs,
    peerTimeoutMs,
    retryLimit: c.int(rec.retryLimit, p('retryLimit'), d.retryLimit, 0, 1_000_000),
    divergencePolicy: c.oneOf(rec.divergencePolicy, p('divergencePolicy'), ['discard', 'keep'] as const, d.divergencePolicy),
    leaseMarginMs: c.int(rec.leaseMarginMs, p('leaseMarginMs'), d.leaseMarginMs, 0, 600_000),
    failsafeMs: c.int(rec.failsafeMs, p('failsafeMs'), d.failsafeMs, 0, 3_600_000),
  }
}
