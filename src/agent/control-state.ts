import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { BlockrepError } from '../util/errors.js'

/**
 * What an agent persists about being under a controller, next to its
 * metadata (`<meta>.control.json`), so a restart does not drop it: a
 * controlled primary restarts fenced (no lease yet), and a node that learned
 * of a newer epoch never resumes as primary in its old one.
 */
export interface ControlState {
  version: 1
  controlled: boolean
  /** the controller instance that took the node over last, or null */
  controller: string | null
  /** the highest leadership term seen in a grant */
  term: number
  /** ms epoch (wall clock) when the node was taken over; null when not controlled */
  since: number | null
  /** the newest epoch learned from a peer or a controller (0: none above the node's own) */
  knownEpoch: number
  /** set while this node, as primary, is fenced by a newer epoch; cleared by a demote */
  fenced: { epoch: number; reason: string; since: number } | null
}

export function controlStatePath(metaPath: string): string {
  return `${metaPath}.control.json`
}

export function emptyControlState(): ControlState {
  return { version: 1, controlled: false, controller: null, term: 0, since: null, knownEpoch: 0, fenced: null }
}

/**
 * Reads the state; a missing file is "never controlled". A file that cannot
 * be parsed is not guessed around: the agent refuses to start, naming it
 * (the operator decides; deleting it drops control, so it is not done silently).
 */
export function loadControlState(path: string): ControlState {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyControlState()
    throw new BlockrepError('ERR_IO', `cannot read ${path}: ${(err as Error).message}`, { cause: err, context: { path } })
  }
  const bad = (why: string): never => {
    throw new BlockrepError('ERR_META_CORRUPT', `${path}: ${why}; restore it, or delete it to take the node out of control (POST /v1/control/release does the same on a running agent)`, { context: { path } })
  }
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    return bad(`not JSON (${(err as Error).message})`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad('expected an object')
  const o = v as Record<string, unknown>
  if (o.version !== 1) return bad(`unknown version ${JSON.stringify(o.version)}`)
  if (typeof o.controlled !== 'boolean') return bad('"controlled" must be true or false')
  const int = (k: string): number => {
    const n = o[k] ?? 0
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) bad(`"${k}" must be an integer ≥ 0`)
    return n as number
  }
  const f = o.fenced
  let fenced: ControlState['fenced'] = null
  if (f !== null && f !== undefined) {
    const r = f as Record<string, unknown>
    if (typeof r !== 'object' || typeof r.epoch !== 'number' || typeof r.reason !== 'string' || typeof r.since !== 'number') return bad('"fenced" must be null or {epoch, reason, since}')
    fenced = { epoch: r.epoch, reason: r.reason, since: r.since }
  }
  return {
    version: 1,
    controlled: o.controlled,
    controller: typeof o.controller === 'string' ? o.controller : null,
    term: int('term'),
    since: typeof o.since === 'number' ? o.since : null,
    knownEpoch: int('knownEpoch'),
    fenced,
  }
}

/** Writes the state atomically: a temporary file, fsync, rename over, fsync of the directory. */
export function saveControlState(path: string, s: ControlState): void {
  const tmp = `${path}.tmp`
  try {
    const fd = openSync(tmp, 'w', 0o600)
    try {
      writeSync(fd, `${JSON.stringify(s, null, 2)}\n`)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, path)
    const dfd = openSync(dirname(path), 'r')
    try {
      fsyncSync(dfd)
    } finally {
      closeSync(dfd)
    }
  } catch (err) {
    throw new BlockrepError('ERR_IO', `cannot save ${path}: ${(err as Error).message}`, { cause: err, context: { path } })
  }
}
