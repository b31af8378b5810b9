import t from 'tap'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { Cluster, randomWrites, sha256File, waitFor } from './helpers/cluster.js'

const MiB = 1024 * 1024

t.test('replication - a standby with the wrong secret is refused and nothing is written to it', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB })
  await c.initAll()
  const b = c.node('b')
  const cfg = JSON.parse(readFileSync(b.config, 'utf8'))
  cfg.secret = 'not-the-shared-secret-at-all'
  writeFileSync(b.config, JSON.stringify(cfg))
  const before = await sha256File(b.data)
  await c.start('a')
  const nbd = await c.nbd('a')
  await randomWrites(nbd, 8 * MiB, 50)
  await c.start('b')
  await waitFor(async () => /authentication|AUTH/i.test((await c.status('a')).peers[0].lastError ?? ''), 20_000, 'auth refusal on the primary')
  const st = await c.status('a')
  t.not(st.peers[0].state, 'streaming', 'the link never reaches streaming')
  t.match(st.peers[0].lastError, /auth/i, `the primary names the reason: ${st.peers[0].lastError}`)
  t.match(await c.logOf('b'), /wrong shared secret|ERR_AUTH_FAILED/, 'the standby logs the failed authentication')
  const bst = await c.status('b')
  t.equal(bst.headSeq, 0, 'the standby applied nothing')
  t.equal(await sha256File(b.data), before, "the standby's data file is untouched")
  await nbd.close()
})

t.test('replication - random garbage sent to the replication ports leaves both agents serving', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  const nbd = await c.nbd('a')
  for (const id of ['a', 'b']) {
    for (const garbage of [randomBytes(64), randomBytes(100_000), Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1])]) {
      await new Promise<void>((resolve) => {
        const s = net.connect(c.node(id).replPort, '127.0.0.1', () => s.end(garbage))
        s.on('error', () => resolve())
        s.on('close', () => resolve())
        s.resume()
      })
    }
  }
  await randomWrites(nbd, 8 * MiB, 100, 4096, 8, 3)
  const st = await c.waitInSync('b', 20_000)
  t.equal(st.peers[0].state, 'streaming', 'the real link kept streaming')
  t.equal(await c.sha('b'), await c.sha('a'), 'writes after the garbage replicated, volumes identical')
  t.match(await c.logOf('b'), /ERR_FRAME|ERR_PROTOCOL|ERR_TIMEOUT/, 'the bad connections were logged with a reason')
  await nbd.close()
})

t.test('replication - two primaries refuse each other (split brain) and write nothing', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB })
  await c.init('a')
  await c.init('b')
  // b, a standby, becomes a second primary of the same volume: it syncs once, then is promoted while a still runs
  await c.startAll()
  await c.waitInSync('b')
  await c.admin('a', 'POST', '/disconnect', { peer: 'b' })
  const nbdA = await c.nbd('a')
  const nbdB = await c.nbd('b')
  // a's writes before b's promotion: once b (epoch 2) reaches a, a learns the newer epoch and is fenced
  await randomWrites(nbdA, 8 * MiB, 20, 4096, 4, 5)
  await c.admin('b', 'POST', '/promote', { force: false })
  await randomWrites(nbdB, 8 * MiB, 20, 4096, 4, 6)
  const shaA = await c.sha('a')
  const shaB = await c.sha('b')
  await c.admin('a', 'POST', '/connect', { peer: 'b' })
  await waitFor(async () => /split brain/i.test((await c.status('b')).peers[0].lastError ?? ''), 20_000, 'split-brain refusal')
  t.match((await c.status('b')).peers[0].lastError, /split brain/i, 'b reports split brain')
  await waitFor(async () => /newer/i.test((await c.status('a')).peers[0].lastError ?? ''), 20_000, 'a refuses to lead b')
  t.match((await c.status('a')).peers[0].lastError, /b knows epoch 2, newer than this node's 1/, 'a refuses b: b knows a newer epoch')
  t.match((await c.status('a')).control?.fenced, { epoch: 2 }, 'a is fenced by the newer epoch (invariant 6)')
  await t.rejects(nbdA.write(0, Buffer.alloc(4096, 9)), { errno: 1 }, 'and accepts no write (EPERM)')
  const [sa, sb] = [await c.status('a'), await c.status('b')]
  t.same([sa.role, sb.role], ['primary', 'primary'], 'both still call themselves primary (neither was demoted)')
  t.ok(sb.epoch > sa.epoch, `b's promotion started a newer epoch (${sb.epoch} > ${sa.epoch})`)
  t.not(sa.peers[0].state, 'streaming', 'a never streams to b')
  t.equal(await c.sha('a'), shaA, 'a unchanged')
  t.equal(await c.sha('b'), shaB, 'b unchanged')
  await nbdA.close()
  await nbdB.close()
})
