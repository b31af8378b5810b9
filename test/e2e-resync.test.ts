import t from 'tap'
import { rmSync } from 'node:fs'
import { Cluster, randomWrites, waitFor } from './helpers/cluster.js'
import type { NbdClient } from '../src/client/nbd-client.js'

const MiB = 1024 * 1024

/** Lines of a node's log that record a drained resync round, after `since` characters. */
async function roundsDrained(c: Cluster, id: string, since: number): Promise<number> {
  return ((await c.logOf(id)).slice(since).match(/resync round drained/g) ?? []).length
}

t.test('resync - a standby killed in the middle of a BITMAP round resumes from what it persisted', async (t) => {
  const size = 16 * MiB
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size, journalSize: 2 * MiB, tunables: { resyncMaxMiBps: 6 } })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  await c.kill('b')
  const nbd = await c.nbd('a')
  const written = await randomWrites(nbd, size, 3000, 4096, 16, 21)
  await c.start('b')
  let first = 0
  await waitFor(async () => {
    const p = (await c.status('a')).peers[0]
    if (p.lastMode?.mode === 'BITMAP') first = p.lastMode.blocks
    return !!p.resync && p.resync.mode === 'BITMAP' && p.resync.blocksDone >= p.resync.blocksTotal * 0.4
  }, 30_000, 'BITMAP round 40% done')
  t.equal(first, written.size, `the first BITMAP sends the ${written.size} dirty blocks`)
  await c.kill('b')
  await c.start('b')
  const st = await c.waitInSync('b', 60_000)
  const second = st.peers[0].lastMode!
  t.equal(second.mode, 'BITMAP', `resumed as BITMAP: ${second.reason}`)
  t.ok(second.blocks < first * 0.75, `the resumed round sends what remained (${second.blocks} of ${first} blocks), not everything again`)
  t.equal(await c.sha('b'), await c.sha('a'), 'identical after the resumed BITMAP')
  await nbd.close()
})

t.test('resync - BITMAP rounds converge under a continuous write load and end byte-identical', async (t) => {
  const size = 32 * MiB
  const c = await Cluster.create(t, {
    nodes: ['a', 'b'],
    size,
    journalSize: 2 * MiB,
    tunables: { headDeltaMaxBytes: 128 * 1024, throttleWritesMiBps: 1, resyncMaxMiBps: 24 },
  })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  await c.kill('b')
  const nbd = await c.nbd('a')
  await randomWrites(nbd, size, 2000, 4096, 16, 31)
  const logStart = (await c.logOf('a')).length
  // a steady writer for the whole catch-up
  let stop = false
  let acked = 0
  const writer = (async (client: NbdClient) => {
    let i = 0
    while (!stop) {
      const block = (i * 7919) % (size / 4096)
      const data = Buffer.alloc(4096, i & 0xff)
      await client.write(block * 4096, data)
      acked++
      i++
    }
  })(nbd)
  await c.start('b')
  await waitFor(async () => {
    const p = (await c.status('a')).peers[0]
    return p.state === 'streaming' && p.resync === null && p.lastMode?.mode === 'BITMAP'
  }, 90_000, 'resync done under load')
  stop = true
  await writer
  const st = await c.waitInSync('b', 30_000)
  const rounds = await roundsDrained(c, 'a', logStart)
  t.ok(acked > 100, `${acked} writes were acknowledged during the catch-up`)
  t.ok(rounds >= 1 && rounds <= 30, `converged in ${rounds} round(s), within the bound`)
  t.equal(st.peers[0].lastMode?.mode, 'BITMAP')
  t.equal(await c.sha('b'), await c.sha('a'), 'identical: no resync read left older content than a racing write')
  await nbd.close()
})

t.test('resync - checksum FULL of an almost-equal disk moves almost nothing', async (t) => {
  const size = 32 * MiB
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size, journalSize: 4 * MiB, tunables: { checksumResync: true } })
  await c.initAll()
  await c.start('a')
  const nbd = await c.nbd('a')
  await randomWrites(nbd, size, 1000, 4096, 16, 41)
  await c.start('b')
  await c.waitInSync('b')
  // the standby loses its metadata and journal but keeps its data; a few writes happen meanwhile
  await c.kill('b', 'SIGTERM')
  await randomWrites(nbd, size, 10, 4096, 4, 43)
  for (const ext of ['.meta', '.journal']) rmSync(c.node('b').data + ext, { force: true })
  await c.init('b')
  const before = (await c.status('a')).peers[0].bytesSent
  await c.start('b')
  const st = await c.waitInSync('b')
  const moved = st.peers[0].bytesSent - before
  t.equal(st.peers[0].lastMode?.mode, 'FULL', 'a standby without metadata gets FULL')
  t.ok(moved < size * 0.05, `checksum FULL sent ${moved} bytes for a ${size}-byte volume (< 5%)`)
  t.equal(await c.sha('b'), await c.sha('a'), 'identical after checksum FULL')
  await nbd.close()
})
