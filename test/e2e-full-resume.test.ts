import t from 'tap'
import { Cluster, waitFor } from './helpers/cluster.js'

const MiB = 1024 * 1024

// The soak counts many FULLs in a row; this pins down that a FULL interrupted mid-copy is resumed, not restarted
// (e2e-resync covers the same for a BITMAP round).
t.test('e2e full resume - a standby killed -9 in the middle of a FULL resumes it as a BITMAP, not from zero', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 32 * MiB, journalSize: 4 * MiB, tunables: { resyncMaxMiBps: 8 } })
  await c.initAll()
  await c.start('a', 60_000)
  await c.start('b', 60_000)
  // the first FULL at 8 MiB/s takes ~4 s: wait until a good part is done
  await waitFor(async () => {
    const p = (await c.status('a')).peers[0]
    return p.state === 'syncing' && p.resync !== null && p.resync.blocksDone >= 2048
  }, 60_000, 'the FULL under way')
  const before = (await c.status('a')).peers[0]
  t.equal(before.resync?.mode, 'FULL')
  await c.kill('b', 'SIGKILL')
  await c.start('b', 60_000)
  await waitFor(async () => {
    const p = (await c.status('a')).peers[0]
    return p.lastMode !== null && p.lastMode.at > (before.lastMode?.at ?? 0)
  }, 60_000, 'the next catch-up decision')
  const next = (await c.status('a')).peers[0].lastMode!
  t.equal(next.mode, 'BITMAP', `resumed: ${next.reason}`)
  t.ok(next.blocks < 8192, `fewer blocks than the whole volume (${next.blocks} of 8192)`)
  await c.waitInSync('b', 120_000)
  t.equal(await c.sha('b'), await c.sha('a'))
})
