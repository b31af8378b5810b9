import t from 'tap'
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs'
import { Cluster } from './helpers/cluster.js'
import { VolumeModel } from './helpers/volume-model.js'
import type { NbdClient } from '../src/client/nbd-client.js'

const MiB = 1024 * 1024
const BS = 4096
/** newest acknowledged writes whose data write the durability test drops */
const LOST = 300

/** Block i gets a unique pattern: its index in every 4 bytes. */
function pattern(i: number): Buffer {
  const b = Buffer.alloc(BS)
  for (let o = 0; o < BS; o += 4) b.writeUInt32BE(i + 1, o)
  return b
}

/** Writes blocks 0.. with depth 8 until stopped; returns the blocks whose write was acknowledged. */
function writer(c: NbdClient, blocks: number): { stop: () => void; acked: Set<number>; done: Promise<void> } {
  const acked = new Set<number>()
  let stopped = false
  const done = (async () => {
    const inflight = new Set<Promise<void>>()
    for (let i = 0; i < blocks && !stopped; i++) {
      const p: Promise<void> = c.write(i * BS, pattern(i)).then(
        () => void acked.add(i),
        () => {},
      ).finally(() => inflight.delete(p))
      inflight.add(p)
      if (inflight.size >= 8) await Promise.race(inflight)
    }
    await Promise.allSettled(inflight)
  })()
  return { stop: () => (stopped = true), acked, done }
}

function missing(file: string, acked: Set<number>): number[] {
  const data = readFileSync(file)
  return [...acked].filter((i) => !data.subarray(i * BS, (i + 1) * BS).equals(pattern(i)))
}

t.test('durability - after kill -9 of the primary, every acknowledged write is on the sync standby and on the restarted primary', async (t) => {
  const size = 32 * MiB
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size, journalSize: 8 * MiB, protocol: 'sync' })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  const nbd = await c.nbd('a')
  const w = writer(nbd, size / BS)
  while (w.acked.size < 1500) await new Promise((r) => setTimeout(r, 20))
  await c.kill('a')
  w.stop()
  await w.done
  t.ok(w.acked.size >= 1500, `${w.acked.size} writes acknowledged before the crash`)
  await c.kill('b', 'SIGTERM')
  t.same(missing(c.node('b').data, w.acked), [], 'the sync standby holds every acknowledged write')
  // kill -9 keeps the page cache, so the data file already holds every write: to see the journal
  // replay, lose the newest acknowledged data writes (as a power cut before writeback would) and keep
  // only their journal records
  const newest = [...w.acked].sort((x, y) => y - x).slice(0, LOST)
  const fd = openSync(c.node('a').data, 'r+')
  for (const i of newest) writeSync(fd, Buffer.alloc(BS), 0, BS, i * BS)
  closeSync(fd)
  t.equal(missing(c.node('a').data, w.acked).length, LOST, `${LOST} acknowledged data writes lost on the primary`)
  const logStart = (await c.logOf('a')).length
  await c.start('a')
  t.same(missing(c.node('a').data, w.acked), [], 'the restarted primary recovered every acknowledged write from its journal')
  const opened = (await c.logOf('a')).slice(logStart).split('\n').map((l) => {
    try {
      return JSON.parse(l) as { msg?: string; replayed?: number }
    } catch {
      return {}
    }
  }).find((l) => l.msg === 'volume opened')
  t.ok((opened?.replayed ?? 0) >= LOST, `the journal replayed ${opened?.replayed} records at open`)
})

t.test('durability - fan-out to a sync and an async standby: both end identical', async (t) => {
  const size = 16 * MiB
  const c = await Cluster.create(t, { nodes: ['a', 'b', 'c'], size, journalSize: 8 * MiB })
  // a's peers: b sync, c async
  const cfg = JSON.parse(readFileSync(c.node('a').config, 'utf8'))
  cfg.peers = cfg.peers.map((p: { node: string }) => ({ ...p, protocol: p.node === 'c' ? 'async' : 'sync' }))
  writeFileSync(c.node('a').config, JSON.stringify(cfg))
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  await c.waitInSync('c')
  const nbd = await c.nbd('a')
  const model = new VolumeModel(size)
  await model.randomWrites(nbd, 1500, 9)
  t.equal(model.failed, 0, 'every write acknowledged')
  await nbd.flush()
  const st = await c.waitInSync('c')
  await c.waitInSync('b')
  t.same(st.peers.map((p) => [p.node, p.protocol, p.state]).sort(), [['b', 'sync', 'streaming'], ['c', 'async', 'streaming']])
  const sha = await c.sha('a')
  t.equal(await c.sha('b'), sha, 'sync standby identical')
  t.equal(await c.sha('c'), sha, 'async standby identical')
  for (const id of ['a', 'b', 'c']) t.same(model.mismatches(c.node(id).data), [], `${id}: ${model.describe(c.node(id).data)}`)
  await nbd.close()
})
