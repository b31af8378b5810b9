/**
 * Following one volume document in etcd, every change in order.
 *
 * Read the key first; deliver the versions the subscriber has not seen (read
 * back through etcd's history), then watch from just after that read, so
 * nothing falls in between. Reconnects are ours, not the
 * etcd3 client's: it resumes a broken watch from the create response's
 * revision (the *current* one), so a second break before the backlog was
 * delivered would skip changes. We track the last mod revision delivered
 * and re-watch from the one after it. Only when etcd has compacted that
 * history away do we start over from a fresh read (the latest document).
 */
import type { Etcd3, IKeyValue, Watcher } from 'etcd3'
import type { VolumeDoc } from './store.js'
import type { Logger } from '../util/log.js'
import { decodeValue, retrying } from './store-etcd-keys.js'

export interface VolumeWatchDeps {
  client: Etcd3
  log: Logger
  opTimeoutMs: number
}

/** Starts following `key`; returns a function that stops it (and resolves once the watch is cancelled). */
export function watchVolumeKey(deps: VolumeWatchDeps, key: string, volume: string, afterRevision: number, cb: (doc: VolumeDoc) => void): () => Promise<void> {
  const { client, log } = deps
  let last = afterRevision
  let nextRev = 0
  let stopped = false
  let watcher: Watcher | null = null

  const deliver = (kv: IKeyValue): void => {
    nextRev = Math.max(nextRev, Number(kv.mod_revision) + 1)
    if (stopped) return
    const doc = decodeValue<VolumeDoc>(key, kv.value)
    if (doc.revision <= last) return
    last = doc.revision
    try {
      cb(doc)
    } catch (err) {
      log.error({ err, volume }, 'watchVolume callback threw')
    }
  }

  const follow = (fromRev: number): void => {
    if (stopped) return
    const w = client.watch().key(key).startRevision(String(fromRev)).watcher()
    watcher = w
    const drop = (): boolean => {
      if (watcher !== w) return false
      watcher = null
      void w.cancel().catch(() => {})
      return true
    }
    w.on('put', (kv: IKeyValue) => {
      if (watcher === w) deliver(kv)
    })
    w.on('disconnected', () => {
      if (drop()) setTimeout(() => follow(nextRev), 250)
    })
    // cancelled by etcd, e.g. because `fromRev` was compacted: start over from the current document
    w.on('error', (err) => {
      log.warn({ err, volume }, 'volume watch cancelled; reading the document again')
      if (drop()) void start()
    })
  }

  /**
   * The versions of the document after `last` up to `kv`, oldest first,
   * read back through etcd's history one version at a time (as many reads
   * as changes the subscriber missed). Stops early where etcd compacted it.
   */
  const backlog = async (kv: IKeyValue): Promise<IKeyValue[]> => {
    const chain = [kv]
    for (;;) {
      const oldest = chain[0]!
      if (decodeValue<VolumeDoc>(key, oldest.value).revision <= last + 1) break
      if (oldest.mod_revision === oldest.create_revision) break
      try {
        const prev = await retrying('watchVolume history', deps.opTimeoutMs, () => client.get(key).revision(Number(oldest.mod_revision) - 1).exec())
        const pkv = prev.kvs[0]
        if (pkv === undefined || pkv.create_revision !== oldest.create_revision) break
        chain.unshift(pkv)
      } catch (err) {
        log.info({ err, volume }, 'watchVolume: older versions compacted; delivering from the oldest kept')
        break
      }
    }
    return chain
  }

  const start = async (): Promise<void> => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        const res = await retrying('watchVolume read', deps.opTimeoutMs, () => client.get(key).exec())
        if (stopped) return
        const history = res.kvs[0] === undefined ? [] : await backlog(res.kvs[0])
        for (const kv of history) deliver(kv)
        nextRev = Math.max(nextRev, Number(res.header.revision) + 1)
        follow(nextRev)
        return
      } catch (err) {
        log.warn({ err, volume, attempt }, 'watchVolume: etcd unavailable, retrying')
        await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)))
      }
    }
  }

  void start()
  return async () => {
    stopped = true
    const w = watcher
    watcher = null
    if (w !== null) await cancelWatch(w)
  }
}

/** Cancels a watcher, waiting at most a second (a cancel on a dead stream is never acknowledged). */
export async function cancelWatch(w: Watcher): Promise<void> {
  await Promise.race([w.cancel().catch(() => {}), new Promise((r) => setTimeout(r, 1000).unref())])
}
