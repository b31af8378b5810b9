import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { Cluster, randomWrites, run, waitFor } from './helpers/cluster.js'

const MiB = 1024 * 1024

/** Scribbles over the whole metadata file so both slots fail their checksums. */
function corrupt(path: string): void {
  const buf = readFileSync(path)
  for (let i = 0; i < buf.length; i += 7) buf[i] ^= 0x5a
  writeFileSync(path, buf)
}

t.test('bad input - a standby whose metadata fails its checksum is rebuilt by FULL, never NONE', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB, journalSize: 2 * MiB })
  await c.initAll()
  await c.startAll()
  const nbd = await c.nbd('a')
  await randomWrites(nbd, 8 * MiB, 200)
  await c.waitInSync('b')
  await c.kill('b', 'SIGTERM')
  corrupt(c.node('b').data + '.meta')
  await c.start('b')
  const st = await c.waitInSync('b')
  const m = st.peers[0].lastMode!
  t.equal(m.mode, 'FULL', `corrupt metadata → FULL: ${m.reason}`)
  t.match(m.reason, /rule 1/)
  t.match(await c.logOf('b'), /failed its checksum/, 'the standby reports the corrupt file')
  t.equal(await c.sha('b'), await c.sha('a'), 'identical after the rebuild')
  await nbd.close()
})

t.test('bad input - a primary whose metadata fails its checksum refuses to start and says why', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a'], size: 4 * MiB, journalSize: 2 * MiB })
  await c.initAll()
  corrupt(c.node('a').data + '.meta')
  const r = await run(['agent', '--config', c.node('a').config]).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  )
  t.equal(r.code, 1, 'exit 1')
  t.match(r.stderr, /ERR_META_CORRUPT/, 'typed error')
  t.match(r.stderr, /a\.img\.meta/, 'names the file')
})

t.test('bad input - a standby of another size is refused with both sizes named; nothing is written', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB, journalSize: 2 * MiB })
  await c.init('a')
  await run(['init', '--data', c.node('b').data, '--size', String(4 * MiB), '--node', 'b', '--journal-size', String(2 * MiB)])
  await c.startAll()
  await waitFor(async () => /size/i.test((await c.status('a')).peers[0].lastError ?? ''), 20_000, 'size refusal')
  const err = (await c.status('a')).peers[0].lastError!
  t.match(err, /8388608/, `names the primary's size: ${err}`)
  t.match(err, /4194304/, "names the standby's size")
  t.equal((await c.status('b')).headSeq, 0, 'the standby applied nothing')
})

t.test('bad input - a config pointing at another volume is refused', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a'], size: 4 * MiB, journalSize: 2 * MiB })
  await c.initAll()
  const cfg = JSON.parse(readFileSync(c.node('a').config, 'utf8'))
  cfg.volumeId = '00000000-0000-4000-8000-000000000000'
  writeFileSync(c.node('a').config, JSON.stringify(cfg))
  const r = await run(['agent', '--config', c.node('a').config]).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  )
  t.equal(r.code, 1)
  t.match(r.stderr, /wrong disk/)
})
