/**
 * Three `blockrep controller` processes over one real etcd: one leads, the
 * others wait in their campaign. kill -9 of the leading controller → another
 * leads within the lease; then kill -9 of the primary under sync writes → the
 * new leader fails over as before and no acknowledged write is lost.
 * Needs the controller (src/control/controller.ts, test/helpers/controller-proc.ts):
 * skipped on a branch without it.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, Cluster, freePorts, waitFor } from './helpers/cluster.js'
import { EtcdCluster, skipWithoutEtcd } from './helpers/etcd.js'

type ProcModule = typeof import('./helpers/controller-proc.js')
const mod = (await import('./helpers/controller-proc.js' as string).catch(() => null)) as ProcModule | null
const skip = mod === null ? 'the controller (test/helpers/controller-proc.ts) is not on this branch' : skipWithoutEtcd()

const MiB = 1024 * 1024
const BS = 4096

function blockData(i: number): Buffer {
  const b = Buffer.alloc(BS, (i * 7 + 1) & 0xff)
  b.writeUInt32BE(i, 0)
  return b
}

t.test('etcd controllers - kill -9 of the leading controller, then of the primary: one failover, no acknowledged write lost', { skip }, async (t) => {
  const { ControllerProc } = mod!
  const etcd = await EtcdCluster.start()
  t.teardown(() => etcd.stop())
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB, journalSize: 4 * MiB, protocol: 'sync' })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')

  const first = await ControllerProc.create(t, c, { a: 'east', b: 'west' }, { store: etcd.url(), name: 'ctl-1', leaseMs: 2000 })
  const ctls = [first]
  for (const name of ['ctl-2', 'ctl-3']) {
    const [port] = await freePorts(1)
    const dir = join(c.dir, name)
    mkdirSync(dir, { recursive: true })
    const p = new ControllerProc(dir, port!, { ...first.cfg, name, listen: `127.0.0.1:${port}` })
    t.teardown(() => p.kill('SIGKILL'))
    ctls.push(p)
  }
  await first.start()
  // the others only campaign: their API comes up when they lead
  for (const p of ctls.slice(1)) {
    const proc = spawn(process.execPath, [CLI, 'controller', '--config', p.config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BLOCKREP_LOG_LEVEL: 'info' } })
    proc.stdout!.on('data', (d) => appendFileSync(p.log, d))
    proc.stderr!.on('data', (d) => appendFileSync(p.log, d))
    p.proc = proc
  }
  let doc: any = null
  await waitFor(async () => (doc = await first.get('/v1/volumes/vol0').catch(() => null)) !== null, 15_000, 'the first document')
  t.equal(doc.primary.node, 'a')
  const epoch0 = doc.epoch as number
  const answering = async (p: InstanceType<ProcModule['ControllerProc']>): Promise<boolean> => (await p.get('/v1/status').catch(() => null)) !== null
  // (the store logs "standing by" once a candidate is campaigning: node start-up takes seconds on a busy machine)
  await waitFor(() => ctls.slice(1).every((p) => existsSync(p.log) && readFileSync(p.log, 'utf8').includes('standing by')), 60_000, 'both others to campaign')
  t.same(await Promise.all(ctls.slice(1).map(answering)), [false, false], 'the other two stand by')

  const leaseMs = first.cfg.leaseMs as number
  const { Etcd3 } = await import('etcd3')
  const raw = new Etcd3({ hosts: etcd.endpoints() })
  t.teardown(() => raw.close())
  const killedAt = Date.now()
  await first.kill('SIGKILL')
  let keyGoneAt = 0
  // watches for the leader key to go; ends when it does, after 30 s, or once the client is closed at teardown
  let watching = true
  t.teardown(() => { watching = false })
  void (async () => {
    while (watching && keyGoneAt === 0 && Date.now() - killedAt < 30000) {
      const v = await raw.get('/blockrep/leader').string().catch(() => undefined)
      if (v === undefined) return
      if (v === null) keyGoneAt = Date.now()
      await new Promise((r) => setTimeout(r, 50))
    }
  })()
  let next: (typeof ctls)[number] | undefined
  await waitFor(async () => (next = (await Promise.all(ctls.slice(1).map(async (p) => ((await answering(p)) ? p : null)))).find((p) => p !== null) ?? undefined) !== undefined, 20_000, 'another controller to lead')
  const tookMs = Date.now() - killedAt
  t.comment(keyGoneAt === 0 ? "the leader key was re-created before the poll saw it gone" : `leader key gone ${keyGoneAt - killedAt} ms after the kill`)
  t.comment(`kill -9 of the leading controller: ${next!.cfg.name} leads ${tookMs} ms later (leaseMs ${leaseMs}, etcd TTL ${Math.max(2, Math.ceil(leaseMs / 1000))} s)`)
  t.ok(tookMs <= 2 * leaseMs + 3000, `another controller leads within the etcd lease, its expiry check and the new leader's start (${tookMs} ms)`)
  const same = await next!.get('/v1/volumes/vol0')
  t.equal(same.epoch, epoch0, 'no volume failover because of the controller change')
  t.equal(same.primary.node, 'a')

  const nbd = await c.nbd('a')
  const acked: number[] = []
  let stop = false
  const load = (async () => {
    for (let i = 0; !stop && i < (8 * MiB) / BS; i++) {
      try {
        await nbd.write(i * BS, blockData(i))
        acked.push(i)
      } catch {
        return
      }
    }
  })()
  await waitFor(() => acked.length >= 100, 30_000, '100 acknowledged writes')
  await c.kill('a', 'SIGKILL')
  stop = true
  await load
  await nbd.close().catch(() => {})
  const timeoutMs = next!.cfg.timeoutMs as number
  const after = await next!.get(`/v1/volumes/vol0?after=${epoch0}&timeoutMs=${10 * timeoutMs}`)
  t.equal(after.primary?.node, 'b', 'the new leader failed over to b')
  t.ok(after.epoch > epoch0, `a new epoch (${epoch0} → ${after.epoch})`)
  const onB = await c.nbd('b')
  let missing = 0
  for (const i of acked) if (!(await onB.read(i * BS, BS)).equals(blockData(i))) missing++
  await onB.close()
  t.equal(missing, 0, `all ${acked.length} acknowledged writes are on b`)
})
