/**
 * Leadership through etcd: one leader key bound to the winner's etcd lease,
 * created only if absent (a transaction on `createRevision == 0`). The term
 * is the key's create revision, so every new leadership has a larger one.
 *
 * Whether the leadership still holds is decided on our own monotonic clock,
 * never on the etcd3 client's `lost` event alone (that fires only ~2 × TTL
 * after the last keepalive when etcd is unreachable; docs/etcd.md): each
 * keepalive records when it was *sent*, and a confirmed one extends the
 * local deadline to `sentAt + ttl − margin`. etcd cannot have expired the
 * lease before then (it counts from when it received the keepalive, later).
 * Past the deadline `isHeld()` is false and the leadership is given up. The
 * writes themselves do not depend on this: each is a transaction comparing
 * the leader key, so a deposed leader's writes fail whatever its clock says.
 */
import type { Etcd3, IKeyValue, Lease, Watcher } from 'etcd3'
import { EtcdLeaseInvalidError } from 'etcd3'
import type { Leadership } from './store.js'
import type { Logger } from '../util/log.js'
import { bounded, retrying } from './store-etcd-keys.js'
import type { EtcdKeys } from './store-etcd-keys.js'
import { cancelWatch } from './store-etcd-watch.js'

export interface LeadershipDeps {
  client: Etcd3
  keys: EtcdKeys
  log: Logger
  /** monotonic ms (performance.now) */
  now: () => number
  /** bound on one etcd call */
  opTimeoutMs: number
}

export interface LeadershipTiming {
  ttlMs: number
  /** subtracted from every confirmed keepalive's validity: clock-rate drift between us and etcd */
  marginMs: number
  /** how often a keepalive is sent */
  keepaliveMs: number
}

/** Default timing for a leader TTL: margin ¼ TTL (at most 1 s), three keepalives per valid window. */
export function leadershipTiming(ttlMs: number, marginMs?: number): LeadershipTiming {
  const margin = marginMs ?? Math.min(1000, Math.floor(ttlMs / 4))
  return { ttlMs, marginMs: margin, keepaliveMs: Math.max(50, Math.floor((ttlMs - margin) / 3)) }
}

/** etcd lease TTLs are whole seconds (and etcd raises short ones to its minimum): never shorter than asked. */
export function ttlSeconds(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs / 1000))
}

export class EtcdLeadership implements Leadership {
  readonly id: string
  readonly term: number
  private readonly deps: LeadershipDeps
  private readonly lease: Lease
  private readonly timing: LeadershipTiming
  private deadline: number
  private lostReason: string | null = null
  private readonly callbacks: ((reason: string) => void)[] = []
  private keepaliveTimer: NodeJS.Timeout | null = null
  private inFlight = 0
  private deadlineTimer: NodeJS.Timeout | null = null
  private watcher: Watcher | null = null
  private ended: Promise<void> = Promise.resolve()
  /** called after the leadership ended (resigned or lost), so the store can forget it */
  onEnd: (() => void) | null = null

  constructor(deps: LeadershipDeps, id: string, term: number, lease: Lease, timing: LeadershipTiming, grantSentAt: number) {
    this.deps = deps
    this.id = id
    this.term = term
    this.lease = lease
    this.timing = timing
    this.deadline = grantSentAt + timing.ttlMs - timing.marginMs
    // autoKeepAlive is off, so 'lost' only comes from etcd saying the lease is gone: authoritative
    lease.on('lost', (err) => void this.lose(`etcd lease lost: ${err.message}`))
    this.armDeadline()
    this.scheduleKeepalive()
    this.watchLeaderKey()
    deps.log.info({ id, term, ttlMs: timing.ttlMs, marginMs: timing.marginMs }, 'leadership acquired')
  }

  isHeld(): boolean {
    if (this.lostReason !== null) return false
    if (this.deps.now() >= this.deadline) {
      void this.lose(`no keepalive confirmed within ${this.timing.ttlMs - this.timing.marginMs} ms`)
      return false
    }
    return true
  }

  /** How long the leadership is still valid on the local clock (0 once lost). */
  remainingMs(): number {
    return this.isHeld() ? this.deadline - this.deps.now() : 0
  }

  onLost(cb: (reason: string) => void): void {
    if (this.lostReason !== null) {
      const reason = this.lostReason
      queueMicrotask(() => cb(reason))
      return
    }
    this.callbacks.push(cb)
  }

  /** Deletes the leader key (if still ours) and revokes the lease; `onLost` callbacks get "resigned". */
  async resign(): Promise<void> {
    if (this.lostReason !== null) return
    this.lostReason = 'resigned'
    const stopped = this.stop()
    const { client, keys, opTimeoutMs } = this.deps
    try {
      await retrying('resign', opTimeoutMs, () => client.if(keys.leader(), 'Create', '==', this.term).then(client.delete().key(keys.leader())).commit())
    } catch (err) {
      this.deps.log.warn({ err, term: this.term }, 'resign: could not delete the leader key; it expires with the lease')
    }
    await Promise.all([this.revoke(), stopped])
    this.deps.log.info({ id: this.id, term: this.term }, 'leadership resigned')
    this.tell('resigned')
    this.onEnd?.()
  }

  /**
   * Gives the leadership up once: stops renewing, revokes the lease (best
   * effort, so another candidate need not wait for it to expire), tells the
   * callbacks. Resolves when the revoke is done.
   */
  lose(reason: string): Promise<void> {
    if (this.lostReason !== null) return this.ended
    this.lostReason = reason
    const stopped = this.stop()
    this.deps.log.warn({ id: this.id, term: this.term, reason }, 'leadership lost')
    this.ended = Promise.all([this.revoke(), stopped]).then(() => {})
    this.tell(reason)
    this.onEnd?.()
    return this.ended
  }

  private tell(reason: string): void {
    for (const cb of this.callbacks.splice(0)) {
      try {
        cb(reason)
      } catch (err) {
        this.deps.log.error({ err }, 'onLost callback threw')
      }
    }
  }

  private stop(): Promise<void> {
    if (this.keepaliveTimer !== null) clearInterval(this.keepaliveTimer)
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer)
    this.keepaliveTimer = null
    this.deadlineTimer = null
    const w = this.watcher
    this.watcher = null
    return w === null ? Promise.resolve() : cancelWatch(w)
  }

  private async revoke(): Promise<void> {
    try {
      await bounded('lease revoke', this.deps.opTimeoutMs, () => this.lease.revoke())
    } catch (err) {
      this.deps.log.debug({ err }, 'lease revoke failed; it expires on its own')
    }
  }

  private armDeadline(): void {
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer)
    const wait = Math.max(0, this.deadline - this.deps.now())
    this.deadlineTimer = setTimeout(() => {
      this.deadlineTimer = null
      if (this.isHeld()) this.armDeadline()
    }, wait + 1)
  }

  /**
   * Keepalives go out every `keepaliveMs` whether or not the previous one was
   * answered: one stuck behind a dead etcd leader must not delay the next.
   * Each is abandoned once it could no longer extend the deadline.
   */
  private scheduleKeepalive(): void {
    this.keepaliveTimer = setInterval(() => void this.keepalive(), this.timing.keepaliveMs)
  }

  private async keepalive(): Promise<void> {
    if (!this.isHeld() || this.inFlight >= 3) return
    const sentAt = this.deps.now()
    const timeoutMs = this.timing.ttlMs - this.timing.marginMs
    this.inFlight++
    try {
      const res = await bounded('lease keepalive', timeoutMs, () => this.lease.keepaliveOnce({ deadline: new Date(Date.now() + timeoutMs) }))
      const valid = Math.min(this.timing.ttlMs, Number(res.TTL) * 1000)
      if (this.lostReason === null && sentAt + valid - this.timing.marginMs > this.deadline) {
        this.deadline = sentAt + valid - this.timing.marginMs
        this.armDeadline()
      }
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause ?? err
      if (cause instanceof EtcdLeaseInvalidError) {
        void this.lose('etcd says the leader lease expired')
        return
      }
      if (this.lostReason === null) this.deps.log.warn({ err, term: this.term, remainingMs: Math.round(this.deadline - this.deps.now()) }, 'leader keepalive failed')
    } finally {
      this.inFlight--
    }
  }

  /** Any deletion or re-creation of the leader key ends this leadership at once. */
  private watchLeaderKey(): void {
    const { client, keys } = this.deps
    const w = client.watch().key(keys.leader()).startRevision(String(this.term + 1)).watcher()
    this.watcher = w
    w.on('delete', () => void this.lose('leader key deleted'))
    w.on('put', (kv: IKeyValue) => {
      if (Number(kv.create_revision) !== this.term) void this.lose(`leader key re-created at revision ${kv.create_revision}`)
    })
    w.on('error', (err) => this.deps.log.warn({ err }, 'leader key watch failed'))
  }
}
