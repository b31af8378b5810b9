/**
 * Failover time: kill -9 of the primary under a sync write load, with a real
 * controller process. Measures, from the kill: detection (the controller's
 * "detected" step), the published configuration (a long-poll on the
 * configuration center returning the new epoch), and the first write
 * accepted on the new primary (an NBD write to the address the document
 * names). Reported as ms and as multiples of heartbeatMs and timeoutMs.
 */
import { Cluster, waitFor } from '../src/demo/local-cluster.js'
import { ControllerProcess } from '../src/demo/controller-proc.js'
import { NbdClient } from '../src/client/nbd-client.js'
import { log, MiB, withCleanup } from './bench-lib.js'

export interface FailoverBench {
  heartbeatMs: number
  timeoutMs: number
  leaseMs: number
  detectedMs: number
  publishedMs: number
  firstWriteMs: number
}

export async function benchFailover(opts: { heartbeatMs?: number; timeoutMs?: number; leaseMs?: number } = {}): Promise<FailoverBench> {
  const heartbeatMs = opts.heartbeatMs ?? 500
  const timeoutMs = opts.timeoutMs ?? 3 * heartbeatMs
  const leaseMs = opts.leaseMs ?? 4 * heartbeatMs
  return withCleanup(async (cleanup) => {
    const c = await Cluster.create(cleanup, { nodes: ['a', 'b'], size: 64 * MiB, journalSize: 16 * MiB, protocol: 'sync', tunables: {}, extra: { a: { log }, b: { log } } })
    await c.initAll()
    await c.startAll()
    await c.waitInSync('b')
    const ctl = await ControllerProcess.create(cleanup, c, { a: 'east', b: 'west' }, { heartbeatMs, timeoutMs, leaseMs })
    await ctl.start()
    const get = (path: string): Promise<any> => ctl.get(path)
    let doc: any = null
    await waitFor(async () => (doc = await get('/v1/volumes/vol0').catch(() => null)) !== null, 20_000, 'the controller publishing vol0')

    const nbd = await c.nbd('a')
    let stop = false
    let acked = 0
    const load = (async () => {
      const buf = Buffer.alloc(64 * 1024, 7)
      for (let i = 0; !stop; i++) {
        try {
          await nbd.write((i % 1000) * buf.length, buf)
          acked++
        } catch {
          return
        }
      }
    })()
    await waitFor(() => acked >= 200, 30_000, 'a write load')
    // let the controller see a few heartbeats under load
    await new Promise(r => setTimeout(r, 2 * heartbeatMs))
    const killedAt = Date.now()
    await c.kill('a', 'SIGKILL')
    stop = true
    await load
    await nbd.close().catch(() => {})
    const next = await get(`/v1/volumes/vol0?after=${doc.epoch}&timeoutMs=${20 * timeoutMs}`)
    const publishedMs = Date.now() - killedAt
    if (next.primary?.node !== 'b') throw new Error(`expected b published, got ${JSON.stringify(next)}`)
    const [host, p] = (next.primary.nbd as string).split(':')
    const onB = await NbdClient.connect(host as string, Number(p))
    await onB.write(0, Buffer.alloc(4096, 1))
    const firstWriteMs = Date.now() - killedAt
    await onB.close()
    const st = await get('/v1/status')
    const fo = st.failovers.find((f: any) => f.state === 'done')
    const detectedMs = (fo.steps.find((s: any) => s.step === 'detected').at as number) - killedAt
    return { heartbeatMs, timeoutMs, leaseMs, detectedMs, publishedMs, firstWriteMs }
  })
}
