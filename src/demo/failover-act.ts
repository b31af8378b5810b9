import { NbdClient } from '../client/nbd-client.js'
import { ControllerProcess } from './controller-proc.js'
import { waitFor } from './local-cluster.js'
import type { Cluster, Teardown } from './local-cluster.js'

/**
 * The demo's failover act: a controller over a running cluster; a client
 * writes through the primary; the primary's whole machine room is killed
 * (kill -9); the controller promotes a standby in the other room and
 * publishes it; the client finds it through the configuration center, checks
 * every acknowledged write and writes on; the killed nodes come back, the old
 * primary is demoted and everyone rejoins the new primary incrementally.
 */
export interface FailoverActReport {
  ok: boolean
  oldPrimary: string
  killed: string[]
  newPrimary: string | null
  epoch: number | null
  heartbeatMs: number
  timeoutMs: number
  /** ms from the kill */
  detectedMs: number | null
  publishedMs: number | null
  firstWriteMs: number | null
  writesAcked: number
  writesMissing: number
  /** per rejoining node: the mode its catch-up used */
  rejoinModes: Record<string, string>
  identical: boolean
  error: string | null
}

export interface FailoverActOptions {
  /** node → machine room */
  sites: Record<string, string>
  heartbeatMs?: number
  timeoutMs?: number
  leaseMs?: number
  /** writes of 4 KiB before the kill (write i goes to block i) */
  writes?: number
  note?: (text: string) => void
}

const BS = 4096

function block(i: number): Buffer {
  const b = Buffer.alloc(BS, (i * 13 + 5) & 0xff)
  b.writeUInt32BE(i, 0)
  return b
}

export async function runFailoverAct(c: Cluster, td: Teardown, opts: FailoverActOptions): Promise<FailoverActReport> {
  const note = opts.note ?? ((): void => {})
  const heartbeatMs = opts.heartbeatMs ?? 500
  const timeoutMs = opts.timeoutMs ?? 3 * heartbeatMs
  const report: FailoverActReport = {
    ok: false, oldPrimary: '', killed: [], newPrimary: null, epoch: null, heartbeatMs, timeoutMs, detectedMs: null, publishedMs: null,
    firstWriteMs: null, writesAcked: 0, writesMissing: 0, rejoinModes: {}, identical: false, error: null,
  }
  try {
    const ctl = await ControllerProcess.create(td, c, opts.sites, { heartbeatMs, timeoutMs, leaseMs: opts.leaseMs ?? 4 * heartbeatMs })
    note(`start the controller (heartbeat ${heartbeatMs} ms, timeout ${timeoutMs} ms)`)
    await ctl.start()
    let doc: { epoch: number; primary: { node: string; nbd: string; site: string } | null } | null = null
    await waitFor(async () => (doc = await ctl.get('/v1/volumes/vol0').catch(() => null)) !== null && doc!.primary !== null, 20_000, 'the controller publishing the primary')
    const first = doc as unknown as { epoch: number; primary: { node: string; nbd: string; site: string } }
    report.oldPrimary = first.primary.node
    const room = first.primary.site
    report.killed = Object.entries(opts.sites).filter(([, s]) => s === room).map(([n]) => n)

    note(`write through ${first.primary.node} (${first.primary.nbd}), then kill -9 its whole room ${room}: ${report.killed.join(', ')}`)
    const client = await connect(first.primary.nbd)
    const acked: number[] = []
    for (let i = 0; i < (opts.writes ?? 500); i++) {
      await client.write(i * BS, block(i))
      acked.push(i)
    }
    await client.close().catch(() => {})
    report.writesAcked = acked.length
    const killedAt = Date.now()
    await Promise.all(report.killed.map(id => c.kill(id, 'SIGKILL')))

    const next = await ctl.get(`/v1/volumes/vol0?after=${first.epoch}&timeoutMs=${10 * timeoutMs}`)
    report.publishedMs = Date.now() - killedAt
    if (next.epoch <= first.epoch || next.primary === null) throw new Error(`no new primary published within ${10 * timeoutMs} ms`)
    report.newPrimary = next.primary.node
    report.epoch = next.epoch
    note(`the controller promoted ${next.primary.node} (room ${next.primary.site}) into epoch ${next.epoch}, published ${report.publishedMs} ms after the kill`)
    const onNew = await connect(next.primary.nbd)
    for (const i of acked) if (!(await onNew.read(i * BS, BS)).equals(block(i))) report.writesMissing++
    await onNew.write(acked.length * BS, block(acked.length))
    report.firstWriteMs = Date.now() - killedAt
    await onNew.close().catch(() => {})
    const st = await ctl.get('/v1/status')
    const detected = st.failovers.find((f: { state: string }) => f.state === 'done')?.steps.find((s: { step: string }) => s.step === 'detected')
    report.detectedMs = detected ? detected.at - killedAt : null
    note(`all ${acked.length} acknowledged writes are on ${next.primary.node}${report.writesMissing > 0 ? ` except ${report.writesMissing}` : ''}; it accepts writes`)

    note(`restart ${report.killed.join(', ')}: the controller demotes the old primary, everyone rejoins ${next.primary.node}`)
    for (const id of report.killed) await c.start(id)
    await waitFor(async () => (await c.status(report.oldPrimary)).role === 'standby', 30_000, `${report.oldPrimary} demoted`)
    for (const id of report.killed) {
      const s = await c.waitInSync(id, 60_000, next.primary.node)
      report.rejoinModes[id] = s.peers.find(p => p.node === id)?.lastMode?.mode ?? 'unknown'
    }
    const shas = await Promise.all([...c.nodes.keys()].map(id => c.sha(id)))
    report.identical = new Set(shas).size === 1
    report.ok = report.writesMissing === 0 && report.identical && !Object.values(report.rejoinModes).includes('FULL')
    note(`rejoined by ${Object.entries(report.rejoinModes).map(([n, m]) => `${n}: ${m}`).join(', ')}; volumes ${report.identical ? 'identical' : 'DIFFER'}`)
  } catch (err) {
    report.error = (err as Error).message
  }
  return report
}

function connect(address: string): Promise<NbdClient> {
  const i = address.lastIndexOf(':')
  return NbdClient.connect(address.slice(0, i), Number(address.slice(i + 1)))
}
