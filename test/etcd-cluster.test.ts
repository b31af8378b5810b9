/**
 * The etcd store over a real three-member etcd cluster on loopback: losing
 * one member changes nothing for the store (writes, reads, the watch, the
 * leadership); losing two makes every call fail with ERR_STORE_UNAVAILABLE
 * in bounded time (no hang); when quorum returns, leadership can be taken
 * again and everything resumes.
 */
import t from 'tap'
import { performance } from 'node:perf_hooks'
import { EtcdCluster, skipWithoutEtcd } from './helpers/etcd.js'
import { waitFor } from './helpers/cluster.js'
import { EtcdStore } from '../src/control/store-etcd.js'
import type { VolumeDoc } from '../src/control/store.js'
import { isCode } from '../src/util/errors.js'

const skip = skipWithoutEtcd()
const OP_TIMEOUT_MS = 5000
const TTL_MS = 6000

function doc(revision: number): VolumeDoc {
  return { volume: 'vol0', epoch: 1, revision, primary: null, standbys: [], updatedAt: revision }
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value?: T; err?: unknown }> {
  const t0 = performance.now()
  try {
    const value = await fn()
    return { ms: Math.round(performance.now() - t0), value }
  } catch (err) {
    return { ms: Math.round(performance.now() - t0), err }
  }
}

t.test('etcd cluster - one member lost: nothing changes; two lost: bounded ERR_STORE_UNAVAILABLE; quorum back: resumes', { skip }, async (t) => {
  const etcd = await EtcdCluster.start({ members: 3 })
  t.teardown(() => etcd.stop())
  const prefix = `/cluster-${process.pid}/`
  const store = new EtcdStore({ hosts: etcd.endpoints(), prefix, opTimeoutMs: OP_TIMEOUT_MS })
  t.teardown(() => store.close())
  const observer = new EtcdStore({ hosts: etcd.endpoints(), prefix, opTimeoutMs: OP_TIMEOUT_MS })
  t.teardown(() => observer.close())

  let lead = await store.campaign('ctl-a', TTL_MS)
  const seen: number[] = []
  observer.watchVolume('vol0', 0, (d) => seen.push(d.revision))
  let v = await store.putVolume(lead, doc(1), null)
  for (let r = 2; r <= 5; r++) v = await store.putVolume(lead, doc(r), v)

  // the worst member to lose: the raft leader (requests in flight to it are lost; the others elect a new one)
  const leaderIdx = (await etcd.leaderIndex())!
  t.not(leaderIdx, null, 'etcd has a leader')
  const [gone, alsoGone] = [leaderIdx, (leaderIdx + 1) % 3]
  await etcd.kill(gone, 'SIGKILL')
  let slowest = 0
  for (let r = 6; r <= 15; r++) {
    const res = await timed(() => store.putVolume(lead, doc(r), v))
    t.equal(res.err, undefined, `write ${r} with one member down`)
    if (res.err !== undefined) throw res.err
    v = res.value!
    slowest = Math.max(slowest, res.ms)
  }
  t.comment(`the etcd leader killed: 10 writes, slowest ${slowest} ms`)
  t.same((await observer.getVolume('vol0'))?.value, doc(15), 'reads see them')
  await waitFor(() => seen.length >= 15, 10000, 'the watch to deliver every change')
  t.same(seen, Array.from({ length: 15 }, (_, i) => i + 1), 'the watch saw every change, in order')
  t.ok(lead.isHeld(), 'the leadership held throughout')

  await etcd.kill(alsoGone, 'SIGKILL')
  const write = await timed(() => store.putVolume(lead, doc(16), v))
  const read = await timed(() => observer.getVolume('vol0'))
  const camp = await timed(() => observer.campaign('ctl-b', TTL_MS, AbortSignal.timeout(3000)))
  t.comment(`quorum lost: write failed in ${write.ms} ms (${(write.err as Error)?.message}), read in ${read.ms} ms`)
  t.ok(isCode(write.err, 'ERR_STORE_UNAVAILABLE') || isCode(write.err, 'ERR_NOT_LEADER'), 'the write fails', { err: write.err })
  t.ok(isCode(write.err, 'ERR_STORE_UNAVAILABLE'), 'as ERR_STORE_UNAVAILABLE while the leadership is still within its TTL')
  t.ok(write.ms <= OP_TIMEOUT_MS + 1000, `in bounded time (${write.ms} ms)`)
  t.ok(isCode(read.err, 'ERR_STORE_UNAVAILABLE'), 'a read fails too', { err: read.err })
  t.ok(read.ms <= OP_TIMEOUT_MS + 1000, `in bounded time (${read.ms} ms)`)
  t.ok(camp.err !== undefined && camp.value === undefined, 'nobody can become leader without quorum')
  await waitFor(() => !lead.isHeld(), TTL_MS + 2000, 'the leader to step down without quorum')
  t.pass('the leader stepped down: its keepalives could not be confirmed')

  const backAt = performance.now()
  await Promise.all([etcd.restart(gone, false), etcd.restart(alsoGone, false)])
  await Promise.all([0, 1, 2].map((i) => etcd.waitHealthy(i)))
  lead = await store.campaign('ctl-a', TTL_MS)
  t.comment(`quorum back: leading again ${Math.round(performance.now() - backAt)} ms after the members were restarted`)
  const cur = (await store.getVolume('vol0'))!
  t.ok(cur.value.revision === 15 || cur.value.revision === 16, 'the document is the last acknowledged one or the write that timed out')
  await store.putVolume(lead, doc(cur.value.revision + 1), cur.version)
  await waitFor(() => seen.at(-1) === cur.value.revision + 1, 15000, 'the watch to resume')
  t.same(seen.slice(0, 15), Array.from({ length: 15 }, (_, i) => i + 1))
  t.ok(seen.every((r, i) => i === 0 || r > seen[i - 1]!), 'still in order, no repeats', { seen })
})
