import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NodeStore, defaultPaths } from '../src/replication/node-store.js'
import { ReplicationNode } from '../src/replication/replication-node.js'
import type { ReplicationConfig } from '../src/replication/replication-node.js'
import { LeaseGuard } from '../src/agent/lease-guard.js'
import { controlStatePath } from '../src/agent/control-state.js'
import { silentLogger } from '../src/util/log.js'

const BS = 4096

/** A real primary (store on disk, write path, no peers) under a lease guard with a fake clock. */
async function primary(t: { teardown(fn: () => unknown): void }, groupCommitMs: number) {
  const dir = mkdtempSync(join(tmpdir(), 'blockrep-ack-'))
  const paths = defaultPaths(join(dir, 'a.img'))
  NodeStore.init({ ...paths, nodeId: 'a', size: 256 * BS, blockSize: BS, journalSize: 1024 * 1024, role: 'primary', volumeId: '00000000-0000-4000-8000-000000000002' })
  const store = NodeStore.open(paths)
  const cfg: ReplicationConfig = {
    secret: 'x'.repeat(32),
    listen: { host: '127.0.0.1', port: 0 },
    peers: [],
    tunables: {
      windowBytes: 1 << 20, headDeltaMaxBytes: 1 << 20, roundShrinkRatio: 0.5, throttleWritesMiBps: 0, digestRangeBlocks: 16, maxRounds: 5, resyncMaxMiBps: 0,
      checksumResync: false, reconnectMinMs: 100, reconnectMaxMs: 500, heartbeatMs: 100, groupCommitMs, maxBatchBytes: 1 << 20, peerTimeoutMs: 1000, divergencePolicy: 'keep',
    },
  }
  const clock = { now: 1000 }
  const node = new ReplicationNode(store, cfg, silentLogger(), { now: () => clock.now, marginMs: 100 })
  const guard = new LeaseGuard({ node, statePath: controlStatePath(paths.meta), marginMs: 100, failsafeMs: 0, now: () => clock.now, log: silentLogger() })
  await node.start()
  t.teardown(async () => {
    await node.close()
    store.close(true)
    rmSync(dir, { recursive: true, force: true })
  })
  return { node, store, guard, clock }
}

t.test('lease ack - a write whose lease runs out while it waits for the journal sync is not acknowledged (EIO), though it is in the journal', async (t) => {
  const { node, store, guard, clock } = await primary(t, 200)
  await guard.lease({ controller: 'c', term: 1, epoch: 1, leaseMs: 1000, sentAtMs: 1000 })
  const head = store.journal.headSeq
  // admitted under a valid lease; the group commit holds it ~200 ms, during which the lease ends
  const w = node.writePath!.write(0, BS, Buffer.alloc(BS, 7))
  clock.now += 5000
  await t.rejects(w, { code: 'ERR_IO', context: { reason: 'ERR_LEASE_EXPIRED', seq: head + 1 } }, 'refused at acknowledgement')
  t.equal(store.journal.headSeq, head + 1, 'the record is in the journal: it may reach standbys or become backlog')
  await t.rejects(node.writePath!.write(0, BS, Buffer.alloc(BS, 8)), { code: 'ERR_LEASE_EXPIRED' }, 'the next write is refused at admission')
  t.equal(store.journal.headSeq, head + 1, 'and takes no seq')
})

t.test('lease ack - a write acknowledged within its lease completes normally', async (t) => {
  const { node, store, guard } = await primary(t, 0)
  await guard.lease({ controller: 'c', term: 1, epoch: 1, leaseMs: 1000, sentAtMs: 1000 })
  const seq = await node.writePath!.write(0, BS, Buffer.alloc(BS, 7))
  t.equal(seq, store.journal.headSeq)
})

t.test('lease ack - a primary that learns a newer epoch while a write waits does not acknowledge it', async (t) => {
  const { node, guard } = await primary(t, 200)
  await guard.lease({ controller: 'c', term: 1, epoch: 1, leaseMs: 100_000, sentAtMs: 1000 })
  const w = node.writePath!.write(0, BS, Buffer.alloc(BS, 7))
  node.noteEpoch(2, 'newer epoch 2 seen at peer b')
  await t.rejects(w, { code: 'ERR_IO', context: { reason: 'ERR_FENCED' } })
  await t.rejects(node.writePath!.write(0, BS, Buffer.alloc(BS, 8)), { code: 'ERR_FENCED' }, 'fenced despite a valid lease')
  await t.rejects(node.promote(false), { code: 'ERR_FENCED' }, 'a fenced primary cannot re-promote itself in place')
})
