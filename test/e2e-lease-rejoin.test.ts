import t from 'tap'
import { readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, run, waitFor } from './helpers/cluster.js'
import { TestController } from './helpers/test-controller.js'
import { Errno } from '../src/nbd/constants.js'

const MiB = 1024 * 1024
const BS = 4096
const LEASE_MS = 1500

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const block = (tag: number, i: number) => {
  const b = Buffer.alloc(BS, tag)
  b.writeUInt32BE(i, 0)
  return b
}

/**
 * Failover and rejoin with the test as the controller: an async primary
 * builds a backlog its standby never receives, its lease runs out, the
 * standby is promoted with a lease; the old primary learns the newer epoch
 * from the new primary's handshake and stops even under a (wrongly granted)
 * valid lease; demoted, it rejoins by BITMAP, byte-identical, and its backlog
 * is reported, kept, and listed and exported by `blockrep backlog`.
 */
t.test('e2e lease rejoin - promote, the old primary is fenced by the newer epoch, demote, BITMAP rejoin, backlog kept and listed', async (t) => {
  const c = await Cluster.create(t, {
    nodes: ['a', 'b'],
    size: 8 * MiB,
    journalSize: 4 * MiB,
    protocol: 'async',
    tunables: { heartbeatMs: 100, peerTimeoutMs: 1500, leaseMarginMs: 300 },
  })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  const ctl = new TestController(c, 'test-ctl/rejoin', LEASE_MS)
  t.teardown(() => ctl.stopAll())
  await ctl.grant('a')
  ctl.renew('a')
  const na = await c.nbd('a')
  for (let i = 0; i < 32; i++) await na.write(i * BS, block(0x11, i))
  await c.waitInSync('b')

  // the link to b goes down; a keeps accepting under its lease: these writes are its backlog
  await c.admin('a', 'POST', '/disconnect', { peer: 'b' })
  const headBefore = (await c.status('a')).headSeq
  for (let i = 0; i < 20; i++) await na.write((100 + i) * BS, block(0x22, i))
  const aHead = (await c.status('a')).headSeq
  t.equal(aHead - headBefore, 20, 'a accepted 20 writes b never received')

  // the controller loses a: no renewal; with b unreachable there is no failsafe, so a stops
  ctl.stop('a')
  await sleep(Math.max(0, ctl.lastSentAt.get('a')! + LEASE_MS - performance.now()) + 50)
  await t.rejects(na.write(0, block(0x33, 0)), { errno: Errno.EPERM }, 'a refuses writes once its lease ran out')

  // fence-before-promote holds: b is promoted with a lease
  const p = await ctl.promote('b', 1)
  t.match(p, { epoch: 2, alreadyPrimary: false, lease: { holder: 'test-ctl/rejoin' } }, 'b is primary in epoch 2 with a lease')
  ctl.renew('b')
  const nb = await c.nbd('b')
  for (let i = 0; i < 10; i++) await nb.write((200 + i) * BS, block(0x44, i))

  // a wrongly renewed lease (a deposed controller, say) does not save a: the newer epoch does fence it
  await ctl.grant('a', 1).catch(() => {})
  await waitFor(async () => (await c.status('a')).control?.fenced != null, 10_000, 'a learns epoch 2 from b and is fenced')
  const sa = await c.status('a')
  t.match(sa.control?.fenced, { epoch: 2, reason: /epoch 2.*peer b/ }, `fenced with the reason: ${sa.control?.fenced?.reason}`)
  t.equal(sa.control?.writable, false)
  await t.rejects(na.write(0, block(0x55, 0)), { errno: Errno.EPERM }, 'a fenced primary accepts no write')
  await t.rejects(ctl.grant('a', 1), /ERR_FENCED/, 'a lease for the old epoch is refused: the node knows a newer one')
  t.equal(JSON.parse(readFileSync(`${c.node('a').data}.meta.control.json`, 'utf8')).fenced.epoch, 2, 'the fence is persisted')
  await na.close()

  // a restart does not lift the fence
  await c.kill('a')
  await c.start('a')
  t.match((await c.status('a')).control?.fenced, { epoch: 2 }, 'still fenced after a restart')

  // demoted, a rejoins b by rule 2: BITMAP over both sides' writes after the branch point
  t.same(await ctl.demote('a'), { ok: true, alreadyStandby: false })
  t.same(await ctl.demote('a'), { ok: true, alreadyStandby: true }, 'a second demote is harmless')
  const st = await c.waitInSync('a', 30_000, 'b')
  const mode = st.peers.find((x) => x.node === 'a')!.lastMode!
  t.equal(mode.mode, 'BITMAP', `rejoin is BITMAP, not FULL (${mode.reason})`)
  t.ok(mode.blocks >= 20 && mode.blocks <= 40, `only the diverged blocks move (${mode.blocks})`)
  t.equal(await c.sha('a'), await c.sha('b'), 'byte-identical after the rejoin')
  const sa2 = await c.status('a')
  t.equal(sa2.role, 'standby')
  t.equal(sa2.epoch, 2, 'a adopted epoch 2')
  t.equal(sa2.control?.fenced, null, 'the fence went with the primary role')

  // the backlog: reported, kept, listed, exported
  const data = c.node('a').data
  const kept = readdirSync(c.dir).filter((n) => n.startsWith('a.img.diverged-'))
  t.equal(kept.length, 2, `report and records kept next to the data file (${kept.join(', ')})`)
  const list = JSON.parse((await run(['backlog', 'list', '--data', data, '--json'])).stdout) as Record<string, unknown>[]
  t.equal(list.length, 1)
  t.match(list[0], { node: 'a', fromSeq: headBefore + 1, toSeq: aHead, records: 20, bytes: 20 * BS, ranges: [[100, 120]] }, 'seq range and block ranges of what a accepted but never shipped')
  const out = mkdtempSync(join(tmpdir(), 'blockrep-backlog-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const id = list[0]!.id as string
  await run(['backlog', 'export', id, '--data', data, '--out', join(out, 'delta.img')])
  const delta = readFileSync(join(out, 'delta.img'))
  t.equal(delta.length, 8 * MiB, 'a raw image delta of the volume size')
  t.same(delta.subarray(105 * BS, 106 * BS), block(0x22, 5), 'holding the backlog data at its offset')
  t.same(delta.subarray(0, BS), Buffer.alloc(BS), 'and nothing else')
  await nb.close()
})
