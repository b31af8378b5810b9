/**
 * The controller's store in etcd (several controllers, one leader): key
 * layout in store-etcd-keys.ts, election in store-etcd-campaign.ts and
 * store-etcd-leadership.ts. docs/etcd.md.
 *
 * Every write made with a Leadership is one transaction that compares the
 * leader key's create revision with the term and its value with the id (and,
 * for a volume document, the document's mod revision with the expected
 * version), so a deposed leader changes nothing: ERR_NOT_LEADER, or
 * ERR_STORE_CONFLICT when only the version differed. Every call is bounded
 * (`opTimeoutMs`): without quorum it fails with ERR_STORE_UNAVAILABLE, it
 * does not hang. Versions are etcd mod revisions.
 */
import { performance } from 'node:perf_hooks'
import { Etcd3 } from 'etcd3'
import type { IKeyValue, IOptions } from 'etcd3'
import type { Alarm, ControlStore, Leadership, LeaseRecord, NodePosition, Versioned, VolumeDoc } from './store.js'
import { BlockrepError, ErrorCode } from '../util/errors.js'
import { createLogger } from '../util/log.js'
import type { Logger } from '../util/log.js'
import { EtcdKeys, decodeValue, encodeValue, retrying } from './store-etcd-keys.js'
import { EtcdLeadership } from './store-etcd-leadership.js'
import type { LeadershipDeps } from './store-etcd-leadership.js'
import { campaign } from './store-etcd-campaign.js'
import { watchVolumeKey } from './store-etcd-watch.js'

export interface EtcdStoreOptions {
  /** "host:port" of each etcd member */
  hosts: string[]
  /** key prefix, default "/blockrep/" */
  prefix?: string
  /** bound on every store call (default 5000 ms); past it: ERR_STORE_UNAVAILABLE */
  opTimeoutMs?: number
  /**
   * gRPC deadline of one attempt (default ⅓ of opTimeoutMs, at least 500 ms).
   * A request a member forwarded to an etcd leader that just died is never
   * answered (etcd gives up only after 5 s + 2 × election timeout); a short
   * attempt deadline lets the client retry once a new leader is elected.
   */
  attemptTimeoutMs?: number
  /** leadership margin: subtracted from every keepalive's validity (default ¼ TTL, at most 1 s) */
  leaderMarginMs?: number
  log?: Logger
  /** monotonic clock in ms (default performance.now) */
  now?: () => number
  /** extra etcd3 client options (credentials, auth) */
  client?: Partial<IOptions>
}

export class EtcdStore implements ControlStore {
  private readonly client: Etcd3
  private readonly keys: EtcdKeys
  private readonly log: Logger
  private readonly opTimeoutMs: number
  private readonly leaderMarginMs: number | undefined
  private readonly deps: LeadershipDeps
  private readonly held = new Set<EtcdLeadership>()
  private readonly watches = new Set<() => Promise<void>>()
  private readonly closing = new AbortController()
  private readonly campaigns = new Set<Promise<void>>()
  private closed = false

  constructor(opts: EtcdStoreOptions) {
    if (opts.hosts.length === 0) throw new BlockrepError(ErrorCode.CONFIG, 'etcd store: at least one host is required')
    this.opTimeoutMs = opts.opTimeoutMs ?? 5000
    this.leaderMarginMs = opts.leaderMarginMs
    this.keys = new EtcdKeys(opts.prefix)
    this.log = (opts.log ?? createLogger({ level: 'silent' })).child({ component: 'etcd-store' })
    const callMs = opts.attemptTimeoutMs ?? Math.max(500, Math.floor(this.opTimeoutMs / 3))
    this.client = new Etcd3({
      hosts: opts.hosts.map((h) => (/^https?:\/\//.test(h) ? h : `http://${h}`)),
      dialTimeout: callMs,
      // unary calls get a deadline (so a member without quorum answers in time); streams (watch, keepalive) must not
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callMs }),
      // one attempt per call: `retrying` retries, bounded in total, and knows when a write is a retry
      // a watch whose member died reconnects (to a random member) every 250 ms, not on a growing backoff
      faultHandling: { global: singleAttempt as never, watchBackoff: watchRetry as never },
      ...opts.client,
    })
    this.deps = { client: this.client, keys: this.keys, log: this.log, now: opts.now ?? (() => performance.now()), opTimeoutMs: this.opTimeoutMs }
  }

  async campaign(candidateId: string, ttlMs: number, signal?: AbortSignal): Promise<Leadership> {
    this.assertOpen()
    if (!(ttlMs > 0)) throw new BlockrepError(ErrorCode.CONFIG, `campaign: ttlMs must be positive, got ${ttlMs}`)
    const both = signal === undefined ? this.closing.signal : AbortSignal.any([signal, this.closing.signal])
    const running = campaign(this.deps, candidateId, ttlMs, { marginMs: this.leaderMarginMs, signal: both }).then(async (lead) => {
      if (this.closed) {
        await lead.resign()
        throw new BlockrepError(ErrorCode.SHUTDOWN, 'etcd store closed while campaigning')
      }
      this.held.add(lead)
      lead.onEnd = () => this.held.delete(lead)
      return lead
    })
    // close() waits for campaigns to settle (a watch left behind would keep reconnecting)
    const settled = running.then(() => {}, () => {})
    this.campaigns.add(settled)
    void settled.then(() => this.campaigns.delete(settled))
    return running
  }

  async leader(): Promise<{ id: string; term: number } | null> {
    const kv = await this.getKv(this.keys.leader(), 'leader')
    return kv === null ? null : { id: kv.value.toString('utf8'), term: Number(kv.create_revision) }
  }

  async getVolume(name: string): Promise<Versioned<VolumeDoc> | null> {
    const kv = await this.getKv(this.keys.volume(name), 'getVolume')
    return kv === null ? null : versioned<VolumeDoc>(kv)
  }

  async listVolumes(): Promise<Versioned<VolumeDoc>[]> {
    const kvs = await this.getPrefix(this.keys.volumes(), 'listVolumes')
    return kvs.map((kv) => versioned<VolumeDoc>(kv)).sort((a, b) => (a.value.volume < b.value.volume ? -1 : a.value.volume > b.value.volume ? 1 : 0))
  }

  async putVolume(lead: Leadership, doc: VolumeDoc, expectedVersion: number | null): Promise<number> {
    const key = this.keys.volume(doc.volume)
    const res = await this.guardedPut(lead, key, doc, 'putVolume', expectedVersion ?? 0)
    return res
  }

  watchVolume(name: string, afterRevision: number, cb: (doc: VolumeDoc) => void): () => void {
    this.assertOpen()
    const stop = watchVolumeKey({ client: this.client, log: this.log, opTimeoutMs: this.opTimeoutMs }, this.keys.volume(name), name, afterRevision, cb)
    let done = false
    const unsubscribe = (): Promise<void> => {
      if (done) return Promise.resolve()
      done = true
      this.watches.delete(unsubscribe)
      return stop()
    }
    this.watches.add(unsubscribe)
    return () => void unsubscribe()
  }

  async putPosition(lead: Leadership, pos: NodePosition): Promise<void> {
    await this.guardedPut(lead, this.keys.position(pos.volume, pos.node), pos, 'putPosition')
  }

  async positions(volume: string): Promise<NodePosition[]> {
    const key = this.keys.positions(volume)
    const kvs = await this.getPrefix(key, 'positions')
    return kvs.map((kv) => decodeValue<NodePosition>(kv.key.toString(), kv.value)).sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0))
  }

  async putAlarm(lead: Leadership, alarm: Alarm): Promise<void> {
    await this.guardedPut(lead, this.keys.alarm(alarm.id), alarm, 'putAlarm')
  }

  async alarms(): Promise<Alarm[]> {
    const kvs = await this.getPrefix(this.keys.alarms(), 'alarms')
    return kvs.map((kv) => decodeValue<Alarm>(kv.key.toString(), kv.value)).sort((a, b) => a.raisedAt - b.raisedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  async putLease(lead: Leadership, lease: LeaseRecord): Promise<void> {
    await this.guardedPut(lead, this.keys.lease(lease.volume), lease, 'putLease')
  }

  async lease(volume: string): Promise<LeaseRecord | null> {
    const key = this.keys.lease(volume)
    const kv = await this.getKv(key, 'lease')
    return kv === null ? null : decodeValue<LeaseRecord>(key, kv.value)
  }

  /** Gives up every leadership held through this store (revoking its lease), stops the watches, closes the client. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closing.abort(new BlockrepError(ErrorCode.SHUTDOWN, 'etcd store closed'))
    await Promise.all([...this.watches].map((unsubscribe) => unsubscribe()))
    await Promise.all([...this.campaigns])
    await Promise.all([...this.held].map((lead) => lead.lose('store closed')))
    this.client.close()
  }

  /**
   * One transaction: leader key create revision == term and value == id
   * [and key mod revision == modRevision]; then put. Returns the new mod revision.
   */
  private async guardedPut(lead: Leadership, key: string, value: unknown, op: string, modRevision?: number): Promise<number> {
    this.assertOpen()
    if (!lead.isHeld()) throw notLeader(lead, op, 'leadership no longer held')
    const leaderKey = this.keys.leader()
    const encoded = encodeValue(value)
    let attempts = 0
    const res = await retrying(op, this.opTimeoutMs, (attempt) => {
      attempts = attempt
      const txn = this.client.if(leaderKey, 'Create', '==', lead.term).and(leaderKey, 'Value', '==', lead.id)
      if (modRevision !== undefined) txn.and(key, 'Mod', '==', modRevision)
      return txn.then(this.client.put(key).value(encoded)).else(this.client.get(leaderKey), this.client.get(key)).commit()
    })
    if (res.succeeded) return Number(res.header.revision)
    const leaderKv = res.responses[0]?.response_range?.kvs[0]
    if (leaderKv === undefined || Number(leaderKv.create_revision) !== lead.term || leaderKv.value.toString('utf8') !== lead.id) {
      const now = leaderKv === undefined ? 'nobody leads' : `${leaderKv.value.toString('utf8')} leads in term ${leaderKv.create_revision}`
      if (lead instanceof EtcdLeadership) void lead.lose(`a write was refused: ${now}`)
      throw notLeader(lead, op, now)
    }
    const cur = res.responses[1]?.response_range?.kvs[0]
    // an earlier attempt may have applied with its answer lost: then the key holds exactly our value, still under our leadership
    if (attempts > 1 && cur !== undefined && cur.value.toString('utf8') === encoded) return Number(cur.mod_revision)
    const found = cur === undefined ? null : Number(cur.mod_revision)
    throw new BlockrepError(ErrorCode.STORE_CONFLICT, `${op}: ${key} is at version ${found ?? 'absent'}, expected ${modRevision === 0 ? 'absent' : modRevision}`, {
      context: { key, expected: modRevision === 0 ? null : modRevision, found },
    })
  }

  private async getKv(key: string, op: string): Promise<IKeyValue | null> {
    this.assertOpen()
    const res = await retrying(op, this.opTimeoutMs, () => this.client.get(key).exec())
    return res.kvs[0] ?? null
  }

  private async getPrefix(prefix: string, op: string): Promise<IKeyValue[]> {
    this.assertOpen()
    const res = await retrying(op, this.opTimeoutMs, () => this.client.getAll().prefix(prefix).exec())
    return res.kvs
  }

  private assertOpen(): void {
    if (this.closed) throw new BlockrepError(ErrorCode.SHUTDOWN, 'etcd store is closed')
  }
}

/** A cockatiel-shaped policy that runs the call once (etcd3's default retries three times, unbounded in total). */
const singleAttempt = {
  execute: <T>(fn: (ctx: { attempt: number; signal: AbortSignal }) => Promise<T>): Promise<T> => fn({ attempt: 0, signal: new AbortController().signal }),
}

/** A cockatiel-shaped constant backoff for re-establishing watch streams. */
interface ConstantBackoff {
  duration: number
  next(): ConstantBackoff
}
const watchRetry: ConstantBackoff = { duration: 250, next: () => watchRetry }

function versioned<T>(kv: IKeyValue): Versioned<T> {
  return { value: decodeValue<T>(kv.key.toString(), kv.value), version: Number(kv.mod_revision) }
}

function notLeader(lead: Leadership, op: string, why: string): BlockrepError {
  return new BlockrepError(ErrorCode.NOT_LEADER, `${op}: ${lead.id} does not lead term ${lead.term} (${why})`, { context: { id: lead.id, term: lead.term, op } })
}
