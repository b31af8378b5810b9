import t from 'tap'
import { rmSync } from 'node:fs'
import { Cluster, randomWrites, waitFor } from './helpers/cluster.js'
import { VolumeModel } from './helpers/volume-model.js'

const MiB = 1024 * 1024

/** A node's JSON log lines after `since` characters, parsed (other lines skipped). */
async function logLines(c: Cluster, id: string, since: number): Promise<{ msg: string; [k: string]: unknown }[]> {
  const out: { msg: string; [k: string]: unknown }[] = []
  for (const line of (await c.logOf(id)).slice(since).split('\n')) {
    try {
      const rec = JSON.parse(line) as { msg?: unknown }
      if (typeof rec.msg === 'string') out.push(rec as { msg: string })
    } catch {
      // a start marker or a partial line
    }
  }
  return out
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

t.test('resync - BITMAP rounds converge under a continuous write load: the throttle engages, then lifts; content matches the client', async (t) => {
  const size = 8 * MiB
  const t0 = Date.now()
  const lap = (what: string) => t.comment(`${what} at ${Date.now() - t0} ms`)
  const c = await Cluster.create(t, {
    nodes: ['a', 'b'],
    size,
    journalSize: 2 * MiB,
  })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  lap('in sync')
  await c.kill('b')
  // restart the primary with a resync slower than the writer, so rounds cannot shrink on their own
  c.opts.tunables = { headDeltaMaxBytes: 64 * 1024, throttleWritesMiBps: 0.125, resyncMaxMiBps: 0.5 }
  c.writeConfig('a')
  await c.kill('a', 'SIGTERM')
  await c.start('a')
  const nbd = await c.nbd('a')
  const model = new VolumeModel(size)
  await model.randomWrites(nbd, 500, 31)
  const logStart = (await c.logOf('a')).length
  // a steady writer, 8 in flight, for the whole catch-up, over 256 blocks (so one round's set stays small);
  // it needs more than 64 writes/s (half the resync's 128 blocks/s) for the gap not to halve each round,
  // which a loaded 2-core machine still manages
  let stop = false
  const before = model.acked
  const writer = Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map(async (lane) => {
    for (let i = lane; !stop; i += 8) await model.write(nbd, (i * 7919) % 256)
  }))
  lap('b down, writes made')
  await c.start('b')
  await waitFor(async () => {
    const p = (await c.status('a')).peers[0]
    return p.state === 'streaming' && p.resync === null && p.lastMode?.mode === 'BITMAP'
  }, 90_000, 'resync done under load')
  lap('resync done')
  stop = true
  await writer
  const st = await c.waitInSync('b', 30_000)
  const lines = await logLines(c, 'a', logStart)
  const rounds = lines.filter((l) => l.msg === 'resync round drained')
  const throttleOn = lines.findIndex((l) => l.msg === 'throttling client writes so resync rounds converge')
  const throttleOff = lines.findIndex((l) => l.msg === 'client write throttle off')
  const roundsBeforeThrottle = rounds.filter((r) => lines.indexOf(r) < throttleOn).length
  t.ok(model.acked - before > 100, `${model.acked - before} writes were acknowledged during the catch-up`)
  t.equal(model.failed, 0, 'no client write failed')
  t.ok(rounds.length >= 2, `the write load forced more than one round (${rounds.length}): gaps ${rounds.map((r) => r.gapRecords).join(', ')}`)
  t.ok(throttleOn >= 0, `client writes were throttled after round ${roundsBeforeThrottle} because the gap did not shrink`)
  t.ok(throttleOff > throttleOn, 'and the throttle was lifted once the standby caught up')
  t.ok(rounds.length - roundsBeforeThrottle <= 6, `once throttled, the rounds converged within 6 more (${rounds.length - roundsBeforeThrottle}), far below the forced bound of 30`)
  t.equal(st.peers[0].lastMode?.mode, 'BITMAP')
  t.same(model.mismatches(c.node('a').data), [], `primary: ${model.describe(c.node('a').data)}`)
  t.same(model.mismatches(c.node('b').data), [], `standby: ${model.describe(c.node('b').data)}; no resync read left older content than a racing write`)
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
