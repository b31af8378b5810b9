import t from 'tap'
import { rmSync } from 'node:fs'
import { Cluster } from './helpers/cluster.js'
import { VolumeModel } from './helpers/volume-model.js'

const MiB = 1024 * 1024

/**
 * One primary and one standby as separate agent processes on loopback: each
 * catch-up mode is reached the way an operator reaches it, the mode the
 * handshake chose is asserted, and both volumes must hold what the client
 * wrote (a model of its writes), not merely equal each other.
 */
t.test('replication - FULL, NONE, HEAD_DELTA, BITMAP and FULL again, each leaving identical volumes', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 32 * MiB, journalSize: 4 * MiB })
  await c.initAll()
  await c.start('a')
  const nbd = await c.nbd('a')
  const model = new VolumeModel(32 * MiB)
  const both = (what: string): void => {
    for (const id of ['a', 'b']) t.same(model.mismatches(c.node(id).data), [], `${what}: ${id} ${model.describe(c.node(id).data)}`)
  }
  await model.randomWrites(nbd, 600, 7)

  // a fresh standby has never synced: FULL
  await c.start('b')
  let st = await c.waitInSync('b')
  t.equal(st.peers[0].lastMode?.mode, 'FULL', 'first sync is FULL')
  t.equal(await c.sha('b'), await c.sha('a'), 'identical after FULL')
  both('after FULL')

  // a clean restart with nothing written: NONE
  t.equal(await c.kill('b', 'SIGTERM'), 0, 'standby exits 0 on SIGTERM')
  await c.start('b')
  st = await c.waitInSync('b')
  t.equal(st.peers[0].lastMode?.mode, 'NONE', 'clean restart is NONE')
  both('after NONE')

  // a crash, then writes the journal still holds: HEAD_DELTA
  await c.kill('b')
  await model.randomWrites(nbd, 200, 11)
  await c.start('b')
  st = await c.waitInSync('b')
  t.equal(st.peers[0].lastMode?.mode, 'HEAD_DELTA', 'writes within the journal: HEAD_DELTA')
  t.equal(await c.sha('b'), await c.sha('a'), 'identical after HEAD_DELTA')
  both('after HEAD_DELTA')

  // more writes than the journal holds: BITMAP
  await c.kill('b')
  const blocks = await model.randomWrites(nbd, 2500, 13, 32)
  st = await c.status('a')
  t.ok(st.journal.tailSeq > st.peers[0].ackedSeq + 1, 'the journal wrapped past the standby')
  await c.start('b')
  st = await c.waitInSync('b')
  const mode = st.peers[0].lastMode!
  t.equal(mode.mode, 'BITMAP', `past the journal: BITMAP (${mode.reason})`)
  t.equal(mode.blocks, blocks.size, `BITMAP moves exactly the dirty blocks (${mode.blocks} of ${blocks.size} written, ${(32 * MiB) / 4096} in the volume)`)
  t.equal(await c.sha('b'), await c.sha('a'), 'identical after BITMAP')
  both('after BITMAP')

  // a standby re-initialised from scratch: FULL again
  await c.kill('b')
  for (const ext of ['', '.meta', '.journal']) rmSync(c.node('b').data + ext, { force: true })
  await c.init('b')
  await c.start('b')
  st = await c.waitInSync('b')
  t.equal(st.peers[0].lastMode?.mode, 'FULL', 're-initialised standby: FULL')
  t.equal(await c.sha('b'), await c.sha('a'), 'identical after the second FULL')
  both('after the second FULL')
  t.equal(model.failed, 0, 'no client write failed')
  await nbd.close()
})
