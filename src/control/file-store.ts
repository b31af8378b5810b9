import fs from 'node:fs'
import { dirname, basename, join } from 'node:path'
import { BlockrepError, isCode } from '../util/errors.js'
import { locks } from '../storage/lock.js'
import type { VolumeLock } from '../storage/types.js'
import type { Alarm, ControlStore, Leadership, LeaseRecord, NodePosition, Versioned, VolumeDoc } from './store.js'

/**
 * The embedded store: one JSON file in the controller's folder. Every change
 * is written to a temporary file, fsynced, renamed over the old one and the
 * folder fsynced, so a crash leaves the previous or the new state, never a
 * torn one. Writes made while a flush runs are coalesced into the next one.
 * Leadership is the store's lock (`FILE.lock`, flock or the native-free pid
 * file): a second controller on the same file is refused (ERR_LOCK_HELD)
 * rather than sharing it.
 */
export class FileStore implements ControlStore {
  private state: FileState
  private lock: VolumeLock | null = null
  private lead: FileLeadership | null = null
  private readonly history = new Map<string, VolumeDoc[]>()
  private readonly watchers = new Map<string, Set<(doc: VolumeDoc) => void>>()
  private flushing: Promise<void> | null = null
  private pending: Promise<void> | null = null
  private closed = false

  private constructor(readonly path: string, state: FileState) {
    this.state = state
    for (const [name, v] of Object.entries(state.volumes)) this.history.set(name, [v.value])
  }

  /** Opens (or starts) the store at `path`; a damaged file is refused with ERR_STORE_UNAVAILABLE naming it. */
  static async open(path: string): Promise<FileStore> {
    let text: string | null = null
    try {
      text = await fs.promises.readFile(path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new BlockrepError('ERR_STORE_UNAVAILABLE', `cannot read the controller store ${path}: ${(err as Error).message}`, { cause: err, context: { path } })
      }
    }
    return new FileStore(path, text === null ? emptyState() : parseState(text, path))
  }

  async campaign(candidateId: string, _ttlMs: number, signal?: AbortSignal): Promise<Leadership> {
    this.assertOpen()
    if (signal?.aborted) throw new BlockrepError('ERR_NOT_LEADER', `campaign of ${candidateId} aborted`)
    if (this.lead?.isHeld()) throw new BlockrepError('ERR_LOCK_HELD', `this store is already led by ${this.lead.id}`, { context: { path: this.path } })
    try {
      this.lock = locks().acquire(this.path)
    } catch (err) {
      if (isCode(err, 'ERR_LOCK_HELD')) {
        const pid = (err.context as { holderPid?: number | null }).holderPid
        throw new BlockrepError('ERR_LOCK_HELD', `another controller${pid ? ` (pid ${pid})` : ''} uses the store ${this.path}; two controllers cannot share a file store (use an etcd store for several)`, { cause: err, context: { path: this.path, holderPid: pid ?? null } })
      }
      throw err
    }
    // the file may have changed while another controller held it
    const fresh = await FileStore.open(this.path)
    this.state = fresh.state
    this.history.clear()
    for (const [name, v] of Object.entries(this.state.volumes)) this.history.set(name, [v.value])
    this.state.term += 1
    this.state.leader = { id: candidateId, term: this.state.term }
    const lead: FileLeadership = new FileLeadership(candidateId, this.state.term, (): Promise<void> => this.release(lead))
    this.lead = lead
    await this.flush()
    return lead
  }

  async leader(): Promise<{ id: string; term: number } | null> {
    return this.lead?.isHeld() ? { id: this.lead.id, term: this.lead.term } : null
  }

  async getVolume(name: string): Promise<Versioned<VolumeDoc> | null> {
    const v = this.state.volumes[name]
    return v === undefined ? null : structuredClone(v)
  }

  async listVolumes(): Promise<Versioned<VolumeDoc>[]> {
    return Object.keys(this.state.volumes).sort().map(k => structuredClone(this.state.volumes[k] as Versioned<VolumeDoc>))
  }

  async putVolume(lead: Leadership, doc: VolumeDoc, expectedVersion: number | null): Promise<number> {
    this.check(lead)
    const cur = this.state.volumes[doc.volume]
    const curVersion = cur?.version ?? null
    if (curVersion !== expectedVersion) {
      throw new BlockrepError('ERR_STORE_CONFLICT', `volume ${doc.volume}: expected version ${expectedVersion ?? 'none'}, the store has ${curVersion ?? 'none'}`, { context: { volume: doc.volume, expectedVersion, version: curVersion } })
    }
    const version = ++this.state.version
    const value = structuredClone(doc)
    this.state.volumes[doc.volume] = { value, version }
    const h = this.history.get(doc.volume) ?? []
    h.push(value)
    if (h.length > 256) h.splice(0, h.length - 256)
    this.history.set(doc.volume, h)
    await this.flush()
    for (const cb of this.watchers.get(doc.volume) ?? []) cb(structuredClone(value))
    return version
  }

  watchVolume(name: string, afterRevision: number, cb: (doc: VolumeDoc) => void): () => void {
    let last = afterRevision
    let active = true
    const deliver = (doc: VolumeDoc): void => {
      if (!active || doc.revision <= last) return
      last = doc.revision
      cb(doc)
    }
    const backlog = (this.history.get(name) ?? []).filter(d => d.revision > afterRevision).map(d => structuredClone(d))
    const set = this.watchers.get(name) ?? new Set()
    set.add(deliver)
    this.watchers.set(name, set)
    if (backlog.length > 0) queueMicrotask(() => backlog.forEach(deliver))
    return () => {
      active = false
      set.delete(deliver)
    }
  }

  async putPosition(lead: Leadership, pos: NodePosition): Promise<void> {
    this.check(lead)
    const byNode = (this.state.positions[pos.volume] ??= {})
    byNode[pos.node] = structuredClone(pos)
    await this.flush()
  }

  async positions(volume: string): Promise<NodePosition[]> {
    const byNode = this.state.positions[volume] ?? {}
    return Object.keys(byNode).sort().map(k => structuredClone(byNode[k] as NodePosition))
  }

  async putAlarm(lead: Leadership, alarm: Alarm): Promise<void> {
    this.check(lead)
    this.state.alarms[alarm.id] = structuredClone(alarm)
    const cleared = Object.values(this.state.alarms).filter(a => a.clearedAt !== null).sort((a, b) => (a.clearedAt as number) - (b.clearedAt as number))
    for (const old of cleared.slice(0, Math.max(0, cleared.length - MAX_CLEARED_ALARMS))) delete this.state.alarms[old.id]
    await this.flush()
  }

  async alarms(): Promise<Alarm[]> {
    return Object.values(this.state.alarms).map(a => structuredClone(a)).sort((a, b) => a.raisedAt - b.raisedAt || a.id.localeCompare(b.id))
  }

  async putLease(lead: Leadership, lease: LeaseRecord): Promise<void> {
    this.check(lead)
    this.state.leases[lease.volume] = structuredClone(lease)
    await this.flush()
  }

  async lease(volume: string): Promise<LeaseRecord | null> {
    const l = this.state.leases[volume]
    return l === undefined ? null : structuredClone(l)
  }

  async close(): Promise<void> {
    if (this.closed) return
    await this.pending?.catch(() => {})
    await this.flushing?.catch(() => {})
    if (this.lead?.isHeld()) await this.lead.resign()
    this.closed = true
    this.watchers.clear()
  }

  private async release(lead: FileLeadership): Promise<void> {
    if (this.lead !== lead) return
    if (this.state.leader?.id === lead.id) {
      this.state.leader = null
      await this.flush().catch(() => {})
    }
    this.lead = null
    this.lock?.release()
    this.lock = null
  }

  private check(lead: Leadership): void {
    this.assertOpen()
    if (lead !== this.lead || !lead.isHeld()) {
      throw new BlockrepError('ERR_NOT_LEADER', `${lead.id} (term ${lead.term}) does not lead this store`, { context: { id: lead.id, term: lead.term } })
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new BlockrepError('ERR_STORE_UNAVAILABLE', `the store ${this.path} is closed`)
  }

  /** Resolves once the state as of this call is durable; concurrent calls share the next write. */
  private flush(): Promise<void> {
    if (this.pending !== null) return this.pending
    const run = async (): Promise<void> => {
      // always yield first: `pending` must be set before it is cleared
      await (this.flushing ?? Promise.resolve()).catch(() => {})
      this.pending = null
      const p = this.writeFile()
      this.flushing = p
      try {
        await p
      } finally {
        if (this.flushing === p) this.flushing = null
      }
    }
    this.pending = run()
    return this.pending
  }

  private async writeFile(): Promise<void> {
    const text = `${JSON.stringify(this.state, null, 1)}\n`
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.tmp`)
    try {
      const fh = await fs.promises.open(tmp, 'w', 0o600)
      try {
        await fh.writeFile(text)
        await fh.sync()
      } finally {
        await fh.close()
      }
      await fs.promises.rename(tmp, this.path)
      const dir = await fs.promises.open(dirname(this.path), 'r')
      try {
        await dir.sync()
      } finally {
        await dir.close()
      }
    } catch (err) {
      throw new BlockrepError('ERR_STORE_UNAVAILABLE', `cannot write the controller store ${this.path}: ${(err as Error).message}`, { cause: err, context: { path: this.path } })
    }
  }
}

const MAX_CLEARED_ALARMS = 500
const FORMAT = 'blockrep-controller-state/1'

interface FileState {
  format: typeof FORMAT
  /** store-wide counter: every volume write takes the next value as its version */
  version: number
  term: number
  leader: { id: string; term: number } | null
  volumes: Record<string, Versioned<VolumeDoc>>
  positions: Record<string, Record<string, NodePosition>>
  alarms: Record<string, Alarm>
  leases: Record<string, LeaseRecord>
}

function emptyState(): FileState {
  return { format: FORMAT, version: 0, term: 0, leader: null, volumes: {}, positions: {}, alarms: {}, leases: {} }
}

function parseState(text: string, path: string): FileState {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw new BlockrepError('ERR_STORE_UNAVAILABLE', `the controller store ${path} is not valid JSON (${(err as Error).message}); move it away to start from an empty store`, { cause: err, context: { path } })
  }
  const s = v as Partial<FileState>
  if (typeof s !== 'object' || s === null || s.format !== FORMAT || typeof s.version !== 'number' || typeof s.term !== 'number') {
    throw new BlockrepError('ERR_STORE_UNAVAILABLE', `the controller store ${path} is not a ${FORMAT} file`, { context: { path } })
  }
  return { ...emptyState(), ...s } as FileState
}

class FileLeadership implements Leadership {
  private held = true
  private readonly lost: ((reason: string) => void)[] = []

  constructor(
    readonly id: string,
    readonly term: number,
    private readonly onResign: () => Promise<void>,
  ) {}

  isHeld(): boolean {
    return this.held
  }

  onLost(cb: (reason: string) => void): void {
    this.lost.push(cb)
  }

  async resign(): Promise<void> {
    if (!this.held) return
    await this.onResign()
    this.held = false
    for (const cb of this.lost.splice(0)) cb('resigned')
  }
}
