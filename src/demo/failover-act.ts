import { NbdClient } from '../client/nbd-client.js'
import { ControllerProcess } from './controller-proc.js'
import { ProxyProcess } from './proxy-proc.js'
import { waitFor } from './local-cluster.js'
import type { Cluster, Teardown } from './local-cluster.js'

/**
 * The demo's failover act: a controller over a running cluster and a client
 * writing through a `blockrep nbd-proxy` that follows the controller's
 * configuration center; the primary's whole machine room is killed (kill -9)
 * while the client writes; the controller fences, promotes a standby in
 * another room and publishes it; the proxy follows and the client writes on;
 * every acknowledged write is then checked on the new primary. The killed
 * nodes come back, the old primary is demoted and everyone rejoins the new
 * primary incrementally.
 */
export interface FailoverActReport {
  ok: boolean
  /** the controller's config and store file (controller-state.json) are in the cluster's folder */
  controllerConfig: string
  oldPrimary: string
  /** the old primary's room, killed whole */
  room: string
  killed: string[]
  newPrimary: string | null
  newRoom: string | null
  oldEpoch: number | null
  epoch: number | null
  heartbeatMs: number
  timeoutMs: number
  leaseMs: number
  /** ms from the kill */
  detectedMs: number | null
  publishedMs: number | null
  /** the first write acknowledged through the proxy after the room was down */
  firstWriteMs: number | null
  /** the longest the client waited between two acknowledgements */
  maxPauseMs: number
  /** the proxy's upstream after the failover: the new primary in the new epoch */
  proxyFollowed: boolean
  /** 4 KiB writes acknowledged to the client through the proxy, before and after the kill */
  writesAcked: number
  writesBeforeKill: number
  writeErrors: number
  /** the first few errors, as the client saw them */
  errors: string[]
  /** acknowledged writes the new primary does not hold, checked one by one */
  writesMissing: number
  /** the old primary is a standby again */
  demoted: boolean
  /** from restarting the killed nodes until all are streaming at the new primary's head */
  rejoinSeconds: number | null
  /** per rejoining node: the mode its catch-up chose */
  rejoinModes: Record<string, string>
  /** sha256 of each node's data file at the end */
  sha256: Record<string, string>
  identical: boolean
  error: string | null
}

export interface FailoverActOptions {
  /** node → machine room */
  sites: Record<string, string>
  heartbeatMs?: number
  timeoutMs?: number
  leaseMs?: number
  /** writes the client gets acknowledged before the kill, and at least as many after it (4 KiB each, write i to block i) */
  writes?: number
  /** writes in flight through the proxy */
  depth?: number
  note?: (text: string) => void
  /** the failover ('failover') or the rejoin ('rejoin') is over, or failed; each is reported once */
  phase?: (which: 'failover' | 'rejoin', report: FailoverActReport) => void
}

const BS = 4096
const TAG = 0xb10c4c7

/** Write n: block n (mod the volume), a pattern no other writer of the demo produces. */
function payload(n: number): Buffer {
  const b = Buffer.alloc(BS, (n * 13 + 5) & 0xff)
  b.writeUInt32BE(n, 0)
  b.writeUInt32BE(TAG, 4)
  return b
}

export async function runFailoverAct(c: Cluster, td: Teardown, opts: FailoverActOptions): Promise<FailoverActReport> {
  const note = opts.note ?? ((): void => {})
  const heartbeatMs = opts.heartbeatMs ?? 500
  const timeoutMs = opts.timeoutMs ?? 3 * heartbeatMs
  const leaseMs = opts.leaseMs ?? 4 * heartbeatMs
  const writes = opts.writes ?? 400
  const report: FailoverActReport = {
    ok: false, controllerConfig: '', oldPrimary: '', room: '', killed: [], newPrimary: null, newRoom: null, oldEpoch: null, epoch: null,
    heartbeatMs, timeoutMs, leaseMs, detectedMs: null, publishedMs: null, firstWriteMs: null, maxPauseMs: 0, proxyFollowed: false,
    writesAcked: 0, writesBeforeKill: 0, writeErrors: 0, errors: [], writesMissing: 0, demoted: false, rejoinSeconds: null, rejoinModes: {}, sha256: {}, identical: false, error: null,
  }
  const emitted = new Set<'failover' | 'rejoin'>()
  const emit = (which: 'failover' | 'rejoin'): void => {
    if (emitted.has(which)) return
    emitted.add(which)
    opts.phase?.(which, report)
  }
  let writer: Writer | null = null
  try {
    const ctl = await ControllerProcess.create(td, c, opts.sites, { heartbeatMs, timeoutMs, leaseMs })
    report.controllerConfig = ctl.config
    // the proxy waits for the controller's first document: start both at once
    const proxy = await ProxyProcess.create(td, c.dir, ctl.url, 'vol0', ['--retry-interval-ms', '200', '--no-path-retry', '100'])
    note(`start the controller (heartbeat ${heartbeatMs} ms, timeout ${timeoutMs} ms, lease ${leaseMs} ms), which takes the agents over, and nbd-proxy, which follows its configuration center`)
    await Promise.all([ctl.start(), proxy.start()])
    let doc: VolumeDoc | null = null
    await waitFor(async () => (doc = await ctl.get('/v1/volumes/vol0').catch(() => null)) !== null && doc!.primary !== null, 20_000, 'the controller publishing the primary')
    const first = doc as unknown as VolumeDoc & { primary: NonNullable<VolumeDoc['primary']> }
    report.oldPrimary = first.primary.node
    report.oldEpoch = first.epoch
    report.room = first.primary.site
    report.killed = Object.entries(opts.sites).filter(([, s]) => s === report.room).map(([n]) => n)

    note(`write through nbd-proxy (to ${first.primary.node})`)
    const client = await NbdClient.connect('127.0.0.1', proxy.nbdPort)
    writer = new Writer(client, Math.floor(client.size / BS), opts.depth ?? 4)
    const w = writer
    await waitFor(() => w.acked >= writes || w.errors.length > 0, 60_000, `${writes} writes through nbd-proxy`)

    note(`kill -9 the whole room ${report.room} (${report.killed.join(', ')}) while the client writes`)
    report.writesBeforeKill = w.acked
    const killedAt = Date.now()
    await Promise.all(report.killed.map(id => c.kill(id, 'SIGKILL')))
    const downAt = Date.now()

    const next = (await ctl.get(`/v1/volumes/vol0?after=${first.epoch}&timeoutMs=${10 * timeoutMs}`)) as VolumeDoc
    report.publishedMs = Date.now() - killedAt
    if (next.epoch <= first.epoch || next.primary === null) throw new Error(`no new primary published within ${10 * timeoutMs} ms of the kill`)
    report.newPrimary = next.primary.node
    report.newRoom = next.primary.site
    report.epoch = next.epoch
    note(`the controller promoted ${next.primary.node} (room ${next.primary.site}) into epoch ${next.epoch}; the client writes on through the proxy`)
    await waitFor(() => w.ackedSince(downAt) >= writes || w.errors.length > 0, 60_000, `${writes} writes through nbd-proxy after the failover`)
    await w.stop()
    await client.flush().catch(() => {})
    await client.close().catch(() => {})
    const firstAck = w.firstAckSince(downAt)
    report.firstWriteMs = firstAck === null ? null : firstAck - killedAt
    report.maxPauseMs = w.maxPauseMs
    report.writesAcked = w.acked
    report.writeErrors = w.errors.length
    report.errors = w.errors.slice(0, 5)
    const ps = await proxy.status()
    report.proxyFollowed = ps.upstream?.node === next.primary.node && ps.upstream.epoch === next.epoch
    await proxy.stop()
    const st = await ctl.get('/v1/status')
    const detected = st.failovers?.find((f: { state: string }) => f.state === 'done')?.steps.find((s: { step: string }) => s.step === 'detected')
    report.detectedMs = detected ? detected.at - killedAt : null

    note(`check each of the ${w.acked} acknowledged writes on ${next.primary.node}`)
    const onNew = await connect(next.primary.nbd)
    report.writesMissing = await missing(onNew, w.model)
    await onNew.close().catch(() => {})
    emit('failover')

    note(`restart ${report.killed.join(', ')}: the controller demotes ${report.oldPrimary}, both rejoin ${next.primary.node}`)
    const restartedAt = Date.now()
    await Promise.all(report.killed.map(id => c.start(id)))
    await waitFor(async () => (await c.status(report.oldPrimary)).role === 'standby', 30_000, `${report.oldPrimary} demoted`)
    report.demoted = true
    for (const id of report.killed) report.rejoinModes[id] = await rejoined(c, next.primary.node, id, restartedAt, 60_000)
    report.rejoinSeconds = (Date.now() - restartedAt) / 1000
    // a standby reports a write acknowledged once it is durable: give the data files a moment to match
    await waitFor(async () => {
      for (const id of c.nodes.keys()) report.sha256[id] = await c.sha(id)
      return (report.identical = new Set(Object.values(report.sha256)).size === 1)
    }, 5_000, 'identical data files').catch(() => {})
    note(`rejoined by ${Object.entries(report.rejoinModes).map(([n, m]) => `${n}: ${m}`).join(', ')}; volumes ${report.identical ? 'identical' : 'DIFFER'}`)
  } catch (err) {
    report.error = (err as Error).message
  } finally {
    await writer?.stop()
  }
  report.ok = report.error === null && report.newPrimary !== null && report.newRoom !== report.room && report.writeErrors === 0 &&
    report.writesMissing === 0 && report.proxyFollowed && report.demoted && report.identical &&
    report.killed.every(id => report.rejoinModes[id] !== undefined && report.rejoinModes[id] !== 'FULL')
  emit('failover')
  emit('rejoin')
  return report
}

interface VolumeDoc {
  epoch: number
  primary: { node: string; nbd: string; site: string } | null
}

/**
 * Writes 4 KiB blocks in order (write n to block n mod the volume), `depth`
 * in flight, until stopped; remembers which write each block last had
 * acknowledged, and when.
 */
class Writer {
  /** block → the write acknowledged last on it */
  readonly model = new Map<number, number>()
  readonly errors: string[] = []
  acked = 0
  maxPauseMs = 0
  private readonly acks: number[] = []
  private next = 0
  private lastAck = Date.now()
  private stopping = false
  private readonly loops: Promise<void>[]

  constructor(private readonly client: NbdClient, private readonly blocks: number, depth: number) {
    this.loops = Array.from({ length: depth }, () => this.loop())
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      const n = this.next++
      const block = n % this.blocks
      try {
        await this.client.write(block * BS, payload(n))
        if ((this.model.get(block) ?? -1) < n) this.model.set(block, n)
        this.acked++
        const now = Date.now()
        this.acks.push(now)
        this.maxPauseMs = Math.max(this.maxPauseMs, now - this.lastAck)
        this.lastAck = now
      } catch (err) {
        this.errors.push(`write ${n} (block ${block}): ${(err as Error).message}`)
        await new Promise(r => setTimeout(r, 100))
      }
    }
  }

  ackedSince(t: number): number {
    let n = 0
    for (let i = this.acks.length - 1; i >= 0 && (this.acks[i] as number) >= t; i--) n++
    return n
  }

  firstAckSince(t: number): number | null {
    return this.acks.find(a => a >= t) ?? null
  }

  async stop(): Promise<void> {
    this.stopping = true
    await Promise.all(this.loops)
  }
}

/** How many of the model's writes `client` does not return, read in runs of up to 256 blocks. */
async function missing(client: NbdClient, model: Map<number, number>): Promise<number> {
  const blocks = [...model.keys()].sort((x, y) => x - y)
  let lost = 0
  for (let i = 0; i < blocks.length;) {
    let j = i + 1
    while (j < blocks.length && j - i < 256 && blocks[j] === (blocks[i] as number) + (j - i)) j++
    const start = blocks[i] as number
    const data = await client.read(start * BS, (j - i) * BS)
    for (let k = 0; k < j - i; k++) {
      if (!data.subarray(k * BS, (k + 1) * BS).equals(payload(model.get(start + k) as number))) lost++
    }
    i = j
  }
  return lost
}

/** Waits until `primary` has `id` streaming at its head after a handshake made since `since`; returns that handshake's mode. */
async function rejoined(c: Cluster, primary: string, id: string, since: number, ms: number): Promise<string> {
  let mode = 'unknown'
  await waitFor(async () => {
    const st = await c.status(primary)
    const p = st.peers.find(x => x.node === id)
    if (p === undefined || p.lastMode === null || p.lastMode.at < since) return false
    mode = p.lastMode.mode
    return p.state === 'streaming' && p.resync === null && p.ackedSeq === st.headSeq
  }, ms, `${id} rejoined ${primary}`)
  return mode
}

function connect(address: string): Promise<NbdClient> {
  const i = address.lastIndexOf(':')
  return NbdClient.connect(address.slice(0, i), Number(address.slice(i + 1)))
}
