/**
 * One soak trial: a primary and its standbys as agent processes, each
 * primary→standby link through a FaultProxy, a ModelWriter through NBD, and
 * the planned faults fired at the phases they wait for. Afterwards: every
 * standby must catch up and be byte-identical to the primary, every
 * acknowledged write must read back, no head may go backwards (seqs are never
 * reused) and no write may fail while the primary was up.
 */
import fs from 'node:fs'
import { randomUUID } from 'node:crypto'
import { Cluster } from '../src/demo/local-cluster.js'
import { NodeStore, defaultPaths } from '../src/replication/node-store.js'
import { NbdClient } from '../src/client/nbd-client.js'
import { FaultProxy } from '../src/testing/fault-proxy.js'
import type { NodeStatus, PeerStatus } from '../src/agent/status-types.js'
import { Cleanup, xorshift } from './bench-lib.js'
import { ModelWriter } from './soak-writer.js'
import type { PlannedFault, TrialPlan } from './soak-plan.js'

const MiB = 1 << 20
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export interface Failure {
  what: string
  /** 'known §1' (journal loses its newest record on reopen), 'known §2' (big writes vs small journals) or 'new' */
  triage: string
}

export interface TrialResult {
  ok: boolean
  failures: Failure[]
  /** fired faults as "kind@phase" */
  fired: string[]
  modes: string[]
  writer: ModelWriter['stats']
  ms: number
  /** kept for a post-mortem when the trial failed */
  dir: string | null
}

/** Where a link stands, as a fault label: handshake, syncing:FULL, syncing:BITMAP, replay:HEAD_DELTA, streaming, down. */
function phaseOf(p: PeerStatus | undefined): string {
  if (!p) return 'down'
  if (p.state === 'handshake') return 'handshake'
  if (p.state === 'syncing') return `syncing:${p.resync?.mode ?? p.lastMode?.mode ?? '?'}`
  if (p.state === 'streaming') return p.lastMode?.mode === 'HEAD_DELTA' && p.lagSeq > 0 ? 'replay:HEAD_DELTA' : 'streaming'
  return 'down'
}

/** The running trial's cleanup (agents, proxies, folder), for a soak interrupted by a signal. */
let active: Cleanup | null = null
export async function abortTrial(): Promise<void> {
  await active?.run()
}

export async function runTrial(plan: TrialPlan, keepDir: boolean, say: (m: string) => void): Promise<TrialResult> {
  const t0 = Date.now()
  const cleanup = new Cleanup()
  active = cleanup
  const failures: Failure[] = []
  const fired: string[] = []
  const modes: string[] = []
  const fail = (what: string, triage = 'new') => {
    failures.push({ what, triage })
    say(`  FAIL [${triage}] ${what}`)
  }
  const rnd = xorshift(plan.seed ^ 0x5bd1e995)
  const nodes = ['a', ...plan.standbys]
  const minJournal = Math.min(...Object.values(plan.journals))
  let dir: string | null = null
  let writer: ModelWriter | null = null
  try {
    const c = await Cluster.create(cleanup, { nodes, size: plan.size, journalSize: plan.journals.a })
    dir = c.dir
    const proxies = new Map<string, FaultProxy>()
    for (const s of plan.standbys) {
      const p = await FaultProxy.start({ host: '127.0.0.1', port: c.node(s).replPort }, { random: rnd })
      cleanup.teardown(() => p.close())
      proxies.set(s, p)
    }
    const extra: Record<string, Record<string, unknown>> = {}
    for (const id of nodes) {
      const j = plan.journals[id] as number
      extra[id] = {
        log: { level: process.env.BLOCKREP_CLUSTER_LOG ?? 'info' },
        tunables: {
          journalSize: j,
          maxBatchBytes: Math.min(4 * MiB, j / 4),
          reconnectMinMs: 50,
          reconnectMaxMs: 400,
          heartbeatMs: 200,
          // generous: the soak shares two cores with everything else on the machine
          peerTimeoutMs: 3000,
          resyncMaxMiBps: plan.resyncMaxMiBps,
          checksumResync: plan.checksumResync,
          headDeltaMaxBytes: plan.headDeltaMaxBytes,
        },
      }
    }
    // the primary reaches each standby through its proxy; standbys nudge the primary directly
    extra.a!.peers = plan.standbys.map((s) => ({ node: s, address: proxies.get(s)!.address, protocol: plan.protocols[s] }))
    for (const s of plan.standbys) extra[s]!.peers = [{ node: 'a', address: `127.0.0.1:${c.node('a').replPort}`, protocol: plan.protocols[s] }]
    c.opts.extra = extra
    for (const id of nodes) {
      c.writeConfig(id)
      const n = c.node(id)
      // in-process (what `blockrep init` does): spawning the CLI costs seconds on a loaded machine
      NodeStore.init({ ...defaultPaths(n.data), nodeId: id, size: plan.size, blockSize: 4096, journalSize: plan.journals[id] as number, role: id === 'a' ? 'primary' : 'standby', volumeId: id === 'a' ? randomUUID() : '' })
    }
    await c.start('a', 60_000)
    await Promise.all(plan.standbys.map((s) => c.start(s, 60_000)))
    const tSetup = Date.now()

    // the primary's status, polled: heads seen, acked seqs, modes chosen
    let last: NodeStatus | null = null
    let headMax = 0
    const seenMode = new Map<string, number>()
    let polling = true
    const poll = async () => {
      while (polling) {
        const st = await c.status('a').catch(() => null)
        if (st) {
          last = st
          headMax = Math.max(headMax, st.headSeq)
          for (const p of st.peers) {
            if (p.lastMode && seenMode.get(p.node) !== p.lastMode.at) {
              seenMode.set(p.node, p.lastMode.at)
              modes.push(p.lastMode.mode)
            }
          }
        }
        await sleep(40)
      }
    }
    const polled = poll()
    const peerOf = (s: string) => (last as NodeStatus | null)?.peers.find((p) => p.node === s)

    writer = new ModelWriter(plan.size, rnd, plan.maxWrite, plan.depth, () => NbdClient.connect('127.0.0.1', c.node('a').nbdPort), plan.rateMiBps)
    const writing = writer.run()
    if (plan.syncFirst) {
      // under a write load with small journals this may take rounds; the faults start regardless after 30 s
      await Promise.all(plan.standbys.map((s) => c.waitInSync(s, 30_000).catch(() => say(`  ${s} not in sync after 30 s; faults start anyway`))))
    }

    const waitPhase = async (f: PlannedFault): Promise<void> => {
      if (f.phase === 'any') return
      const proxy = proxies.get(f.peer)!
      if (f.phase === 'handshake') {
        // slow the link, then make it reconnect, so the handshake lasts long enough to be hit
        proxy.delay(60 + f.amount)
        proxy.cut()
      }
      const want = (p: string) => (f.phase === 'syncing' ? p.startsWith('syncing') : f.phase === 'streaming' ? p === 'streaming' || p.startsWith('replay') : p === f.phase)
      const end = Date.now() + 1500
      while (Date.now() < end && !want(phaseOf(peerOf(f.peer)))) await sleep(10)
    }

    for (const f of plan.faults) {
      await sleep(f.afterMs)
      await waitPhase(f)
      const phase = phaseOf(peerOf(f.peer))
      const proxy = proxies.get(f.peer)!
      fired.push(`${f.kind}@${phase}`)
      say(`  fault ${f.kind} (${f.peer}) at ${phase}`)
      if (f.kind === 'kill-primary') {
        writer.primaryDown = true
        await c.kill('a', 'SIGKILL')
        const before = headMax
        proxy.resume()
        await sleep(f.holdMs)
        await c.start('a', 60_000)
        const st = await c.status('a')
        if (st.headSeq < before) fail(`primary head went back from ${before} to ${st.headSeq} after kill -9 at ${phase}: seqs ${st.headSeq + 1}..${before} would be reused`, writer.stats.largestSent > plan.journals.a! / 2 ? 'known §1' : 'new')
        headMax = Math.max(headMax, st.headSeq)
        last = st
        setTimeout(() => writer && (writer.primaryDown = false), 300)
      } else if (f.kind === 'kill-standby') {
        const p = peerOf(f.peer)
        const acked = p?.state === 'streaming' ? p.ackedSeq : 0
        await c.kill(f.peer, 'SIGKILL')
        proxy.resume()
        await sleep(f.holdMs)
        await c.start(f.peer, 60_000)
        const st = await c.status(f.peer)
        if (st.headSeq < acked) fail(`standby ${f.peer} came back at head ${st.headSeq} after kill -9 at ${phase}, but had acknowledged ${acked}`, writer.stats.largestSent > plan.journals[f.peer]! / 2 ? 'known §1' : 'new')
      } else if (f.kind === 'cut') {
        proxy.resume()
        proxy.cut()
      } else if (f.kind === 'stall') {
        proxy.stall()
        await sleep(f.holdMs)
        proxy.resume()
      } else if (f.kind === 'truncate') {
        proxy.resume()
        const armed = proxy.truncate(f.amount, f.dir)
        await Promise.race([armed, sleep(1500)])
        proxy.disarm()
      } else {
        proxy.delay(f.amount, f.amount / 2)
        await sleep(f.holdMs)
        proxy.resume()
      }
    }

    const tChaos = Date.now()
    // settle: links healed, every agent up, writes stopped, standbys caught up
    for (const p of proxies.values()) p.resume()
    await sleep(200)
    writer.stop()
    await writing
    for (const s of plan.standbys) {
      try {
        await c.waitInSync(s, 60_000)
      } catch {
        const p = peerOf(s) ?? (await c.status('a').catch(() => null))?.peers.find((x) => x.node === s)
        const why = `${s} did not catch up in 60 s: state ${p?.state}, acked ${p?.ackedSeq} of ${(last as NodeStatus | null)?.headSeq}, last error ${p?.lastError ?? 'none'}`
        fail(why, /JOURNAL_FULL|journal/i.test(p?.lastError ?? '') ? 'known §2' : 'new')
      }
    }
    polling = false
    await polled
    const tSettle = Date.now()
    say(`  setup ${tSetup - t0} ms, faults ${tChaos - tSetup} ms, catch-up ${tSettle - tChaos} ms`)
    const pst = await c.status('a')
    for (const s of plan.standbys) {
      const st = await c.status(s)
      if (!st.consistent) fail(`${s} reports inconsistent after catching up`)
      if (st.headSeq !== pst.headSeq) fail(`${s} head ${st.headSeq} != primary head ${pst.headSeq} once caught up`)
    }

    // every write that failed while the primary was up is a bug (the export accepted its size)
    const unexpected = writer.failures.filter((x) => !x.primaryDown)
    const why = unexpected.length > 0 ? engineErrors(c.node('a').log) : []
    for (const wf of unexpected.slice(0, 3)) {
      const tooBig = wf.length > minJournal / 2
      const reason = why.find((m) => m.includes(`of ${wf.length} bytes`)) ?? why[0] ?? 'no engine error logged'
      fail(`write of ${wf.length} bytes at ${wf.offset} failed at +${wf.at} ms with the primary up: ${wf.message} (primary log: ${reason})`, tooBig ? 'known §2' : 'new')
    }

    if (process.env.SOAK_SELFTEST === '1') corruptForSelfTest(c.node('a').data, writer)
    // byte-identical volumes, and the primary's content is what the client was acknowledged
    // (read from the files: the agents write through the page cache, so this is what NBD would return)
    const primary = fs.readFileSync(c.node('a').data)
    for (const s of plan.standbys) {
      const other = fs.readFileSync(c.node(s).data)
      if (!other.equals(primary)) fail(`${s} differs from a: ${differing(primary, other)}`)
    }
    const bad = writer.check(primary, 0, 8)
    if (bad.length > 0) fail(`acknowledged data does not read back from the primary at sectors ${bad.join(', ')}`)
  } catch (err) {
    fail(`trial aborted: ${(err as Error).stack ?? err}`)
  } finally {
    writer?.stop()
    const keep = keepDir && failures.length > 0
    if (keep) process.env.BLOCKREP_KEEP_DIR = '1'
    await cleanup.run()
    active = null
    if (keep) delete process.env.BLOCKREP_KEEP_DIR
    else dir = null
  }
  return {
    ok: failures.length === 0,
    failures,
    fired,
    modes,
    writer: writer?.stats ?? { acked: 0, ackedBytes: 0, failed: 0, largest: 0, largestSent: 0, unaligned: 0, reconnects: 0 },
    ms: Date.now() - t0,
    dir,
  }
}

/** The distinct messages of the errors the NBD engine reported in an agent's log. */
function engineErrors(logFile: string): string[] {
  const out = new Set<string>()
  for (const line of fs.readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes('engine error')) continue
    try {
      const m = (JSON.parse(line) as { err?: { message?: string } }).err?.message
      if (m) out.add(m.replace(/\/tmp\/blockrep-\w+\//g, ''))
    } catch {
      // a partial line at a kill
    }
  }
  return [...out]
}

/** How two volumes differ: the count of 4 KiB blocks and the first few. */
function differing(a: Buffer, b: Buffer): string {
  const blocks: number[] = []
  let n = 0
  for (let off = 0; off < Math.min(a.length, b.length); off += 4096) {
    const end = Math.min(off + 4096, a.length, b.length)
    if (a.compare(b, off, end, off, end) !== 0) {
      n++
      if (blocks.length < 8) blocks.push(off / 4096)
    }
  }
  return `${n} blocks of 4 KiB (first: ${blocks.join(', ')})${a.length !== b.length ? `; sizes ${a.length} and ${b.length}` : ''}`
}

/** SOAK_SELFTEST=1: flip a byte of an acknowledged sector on the primary, so the checks must report the trial failed. */
function corruptForSelfTest(file: string, w: ModelWriter): void {
  const sector = w.unknown.findIndex((u, i) => u === 0 && w.model.subarray(i * 512, i * 512 + 512).some((x) => x !== 0))
  if (sector < 0) return
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, Buffer.from([w.model[sector * 512]! ^ 0xff]), 0, 1, sector * 512)
  fs.closeSync(fd)
}
