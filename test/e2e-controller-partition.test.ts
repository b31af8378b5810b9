import t from 'tap'
import { writeFileSync } from 'node:fs'
import { Cluster, waitFor } from './helpers/cluster.js'
import { ControllerProc } from './helpers/controller-proc.js'
import { CuttableProxy } from './helpers/tcp-cut.js'

const MiB = 1024 * 1024
const BS = 4096

t.test('controller - partition: the isolated old primary stops accepting writes before the other side promotes; after healing it rejoins, byte-identical', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB, journalSize: 4 * MiB, protocol: 'sync' })
  const a = c.node('a')
  const b = c.node('b')
  // every link of a goes through a proxy we can cut: controller → a's admin API, a → b and b → a replication
  const adminA = await CuttableProxy.create(t, a.adminPort)
  const ab = await CuttableProxy.create(t, b.replPort)
  const ba = await CuttableProxy.create(t, a.replPort)
  c.opts.extra = {
    a: { peers: [{ node: 'b', address: ab.address, protocol: 'sync' }] },
    b: { peers: [{ node: 'a', address: ba.address, protocol: 'sync' }] },
  }
  c.writeConfig('a')
  c.writeConfig('b')
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  const ctl = await ControllerProc.create(t, c, { a: 'east', b: 'west' })
  const nodes = (ctl.cfg.volumes as any[])[0].nodes
  nodes[0].admin = adminA.address
  writeFileSync(ctl.config, JSON.stringify(ctl.cfg, null, 2))
  await ctl.start()
  let lease = 'unknown'
  await waitFor(async () => (lease = (await ctl.get('/v1/status')).nodes.find((n: any) => n.node === 'a')?.lease ?? 'unknown') !== 'unknown', 10_000, 'the first lease grant to a')
  t.not(lease, 'unsupported', 'a holds leases: the agent answers POST /v1/control/lease')
  const doc0 = await ctl.get('/v1/volumes/vol0')
  t.equal(doc0.primary.node, 'a')

  const nbd = await c.nbd('a')
  const ackedAt: number[] = []
  let refusedAt: number | null = null
  let stop = false
  const load = (async () => {
    for (let i = 0; !stop; i++) {
      try {
        await nbd.write((i % 1024) * BS, Buffer.alloc(BS, i & 0xff))
        ackedAt.push(Date.now())
      } catch {
        refusedAt ??= Date.now()
        await new Promise(r => setTimeout(r, 20))
      }
    }
  })()
  await waitFor(() => ackedAt.length >= 50, 20_000, 'writes flowing')
  const cutAt = Date.now()
  adminA.cut()
  ab.cut()
  ba.cut()
  const next = await ctl.get(`/v1/volumes/vol0?after=${doc0.epoch}&timeoutMs=20000`)
  t.equal(next.primary?.node, 'b', 'b promoted on the other side')
  const fo = (await ctl.get('/v1/status')).failovers.find((f: any) => f.state === 'done')
  const promotedAt = fo.steps.find((s: any) => s.step === 'promoted').at as number
  await waitFor(() => refusedAt !== null, 10_000, 'a refusing writes')
  const lastAck = Math.max(...ackedAt)
  t.ok(refusedAt! < promotedAt, `a refused writes ${promotedAt - refusedAt!} ms before b was promoted (cut at +0, refused at +${refusedAt! - cutAt}, promoted at +${promotedAt - cutAt})`)
  t.ok(lastAck < promotedAt, `a acknowledged its last write before b's promotion (+${lastAck - cutAt} ms < +${promotedAt - cutAt} ms)`)
  stop = true
  await load
  await nbd.close().catch(() => {})

  adminA.heal()
  ab.heal()
  ba.heal()
  await waitFor(async () => (await c.status('a')).role === 'standby', 20_000, 'a demoted after healing')
  const sa = await c.status('a')
  const sb = await c.status('b')
  t.ok(!(sa.role === 'primary' && sb.role === 'primary'), 'never two primaries')
  await c.waitInSync('a', 60_000, 'b')
  t.equal(await c.sha('a'), await c.sha('b'), 'a rejoined and is byte-identical to b')
})
