/**
 * Campaigning for the leader key: while another controller's key exists,
 * wait for it to go (a watch, with a poll as a safety net); when it is
 * absent, grant a lease and create the key bound to it in one transaction
 * that succeeds only if the key still does not exist. Errors (etcd
 * unreachable, no quorum) are logged and retried: a standby controller
 * campaigns until it wins or is aborted. Never on a local timer alone: only
 * the key's absence in etcd lets a candidate lead.
 */
import { EtcdLeadership, leadershipTiming, ttlSeconds } from './store-etcd-leadership.js'
import type { LeadershipDeps } from './store-etcd-leadership.js'
import { bounded, retrying } from './store-etcd-keys.js'
import { cancelWatch } from './store-etcd-watch.js'

export interface CampaignOptions {
  /** subtract from every keepalive's validity (default ¼ TTL, at most 1 s) */
  marginMs?: number
  signal?: AbortSignal
}

export async function campaign(deps: LeadershipDeps, id: string, ttlMs: number, opts: CampaignOptions = {}): Promise<EtcdLeadership> {
  const { client, keys, log, opTimeoutMs } = deps
  const timing = leadershipTiming(ttlMs, opts.marginMs)
  const signal = opts.signal
  let loggedWaiting = 0
  for (;;) {
    signal?.throwIfAborted()
    try {
      const cur = await retrying('campaign read', opTimeoutMs, () => client.get(keys.leader()).exec())
      const holder = cur.kvs[0]
      if (holder === undefined) {
        const won = await tryCreate(deps, id, ttlMs, timing)
        if (won !== null) return won
        continue
      }
      if (loggedWaiting !== Number(holder.create_revision)) {
        loggedWaiting = Number(holder.create_revision)
        log.info({ id, leader: holder.value.toString(), term: loggedWaiting }, 'standing by: another controller leads')
      }
      await keyChanged(deps, Number(cur.header.revision), Math.max(100, Math.floor(ttlMs / 2)), signal)
    } catch (err) {
      signal?.throwIfAborted()
      log.warn({ err, id }, 'campaign: etcd unavailable, retrying')
      await sleep(Math.max(100, Math.floor(ttlMs / 4)), signal)
    }
  }
}

async function tryCreate(deps: LeadershipDeps, id: string, ttlMs: number, timing: ReturnType<typeof leadershipTiming>): Promise<EtcdLeadership | null> {
  const { client, keys, now, opTimeoutMs } = deps
  const grantSentAt = now()
  const lease = client.lease(ttlSeconds(ttlMs), { autoKeepAlive: false, deadline: new Date(Date.now() + opTimeoutMs) })
  lease.on('lost', () => {})
  try {
    const leaseId = await bounded('lease grant', opTimeoutMs, () => lease.grant())
    const res = await retrying('campaign', opTimeoutMs, () =>
      client.if(keys.leader(), 'Create', '==', 0).then(client.put(keys.leader()).value(id).lease(leaseId)).else(client.get(keys.leader())).commit(),
    )
    if (res.succeeded) return new EtcdLeadership(deps, id, Number(res.header.revision), lease, timing, grantSentAt)
    // an earlier attempt may have created the key with its answer lost: ours if it carries our id and our lease
    const kv = res.responses[0]?.response_range?.kvs[0]
    if (kv !== undefined && kv.value.toString('utf8') === id && kv.lease === leaseId) {
      return new EtcdLeadership(deps, id, Number(kv.create_revision), lease, timing, grantSentAt)
    }
  } catch (err) {
    void lease.revoke().catch(() => {})
    throw err
  }
  void lease.revoke().catch(() => {})
  return null
}

/** Resolves when the leader key changes after `revision`, after `pollMs`, or throws when aborted. */
function keyChanged(deps: LeadershipDeps, revision: number, pollMs: number, signal?: AbortSignal): Promise<void> {
  const w = deps.client.watch().key(deps.keys.leader()).startRevision(String(revision + 1)).watcher()
  return new Promise<void>((resolve, reject) => {
    const done = (err?: unknown): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      void cancelWatch(w).then(() => (err === undefined ? resolve() : reject(err)))
    }
    const onAbort = (): void => done(signal?.reason)
    const timer = setTimeout(() => done(), pollMs)
    signal?.addEventListener('abort', onAbort, { once: true })
    w.on('delete', () => done())
    w.on('put', () => done())
    w.on('error', () => done())
  })
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
