/**
 * Replication benchmarks over real agent processes on loopback (the local
 * cluster the demo and the e2e tests use). Every figure is a ratio to a
 * baseline measured in the same run.
 *
 *   streaming   1 MiB writes through NBD, queue depth 8: engine with no peer,
 *               with one async standby, with one sync standby; and a raw Node
 *               socket pipe (this process -> TCP loopback -> a child process
 *               writing with fs.writeSync + fdatasync every 16 MiB)
 *   head-delta  bytes on the wire to catch a crashed standby up by HEAD_DELTA,
 *               over the payload bytes of the writes it missed
 *   catch-up    time to catch up 1% dirty 4 KiB blocks of a 4 GiB volume by
 *               BITMAP, against a FULL copy of the same volume
 *
 * Run: npx tsc -p . && node dist/scripts/bench-replication.js [streaming|head-delta|catch-up ...]
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Cluster } from '../src/demo/local-cluster.js'
import type { NbdClient } from '../src/client/nbd-client.js'
import { benchCatchUp, benchHeadDelta } from './bench-catch-up.js'
import { log, peer, payloads, Cleanup, MiB, fmtBytes, fmtMiBps, fmtMs, median, mibPerSec, msSince, pipelinedWrites, progress, withCleanup } from './bench-lib.js'

// ---------------------------------------------------------------------------
// 1. streaming throughput

export interface BenchStreamingOptions {
  /** bytes written per configuration, in MiB (default 512) */
  totalMiB?: number
  /** volume size in MiB (default 1024; a sparse file) */
  volumeMiB?: number
  /** journal in MiB (default 256) */
  journalMiB?: number
  /** NBD requests in flight (default 8) */
  depth?: number
  /** rounds of the four configurations, interleaved; medians are reported (default 2) */
  rounds?: number
}

type StreamConfig = 'none' | 'async' | 'sync'

interface Rig {
  kind: StreamConfig
  c: Cluster
  nbd: NbdClient
}

/** A cluster for one configuration, left running across rounds (the standby's first sync is paid once). */
async function openRig(kind: StreamConfig, o: Required<BenchStreamingOptions>, cleanup: Cleanup, say: (m: string) => void): Promise<Rig> {
  const nodes = kind === 'none' ? ['a'] : ['a', 'b']
  const c = await Cluster.create(cleanup, {
    nodes,
    size: o.volumeMiB * MiB,
    journalSize: o.journalMiB * MiB,
    protocol: kind === 'none' ? 'sync' : kind,
    // the standby's first sync of the blank volume compares digests instead of copying 1 GiB of zeros;
    // the long peer timeout covers the standby hashing its volume (it sends nothing meanwhile)
    tunables: { checksumResync: true, peerTimeoutMs: 30_000 },
    extra: Object.fromEntries(nodes.map((n) => [n, { log }])),
  })
  // BLOCKREP_BENCH_STANDBY_DIR puts the standby's files on another disk (e.g. a tmpfs standing in
  // for the standby machine's own disk), so primary and standby stop competing for one device
  const standbyDir = process.env.BLOCKREP_BENCH_STANDBY_DIR
  if (standbyDir && kind !== 'none') {
    c.node('b').data = path.join(standbyDir, `${kind}-b.img`)
    c.writeConfig('b')
  }
  await c.initAll()
  for (const n of nodes) await c.start(n)
  if (kind !== 'none') {
    const t0 = performance.now()
    await c.waitInSync('b', 120_000)
    say(`${kind}: standby in sync (initial ${peer(await c.status('a'), 'b').lastMode?.mode}) after ${fmtMs(msSince(t0))}`)
  }
  const nbd = await c.nbd('a')
  cleanup.teardown(() => nbd.close())
  return { kind, c, nbd }
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); 0 elsewhere. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
}

/** One timed run: totalMiB of 1 MiB writes, then a flush; round r writes the other half of the volume than round r-1. */
async function streamOnce(rig: Rig, o: Required<BenchStreamingOptions>, round: number): Promise<{ mibps: number; lagBytes: number; cores: number }> {
  const chunk = MiB
  const n = Math.floor((o.totalMiB * MiB) / chunk)
  const base = ((round - 1) * n * chunk) % (o.volumeMiB * MiB)
  const data = payloads(chunk)
  const pids = [...rig.c.nodes.values()].map((x) => x.proc?.pid)
  const cpu0 = pids.reduce((a: number, p) => a + cpuSeconds(p), 0) + cpuSeconds(process.pid)
  const t0 = performance.now()
  await pipelinedWrites(rig.nbd, n, o.depth, (i) => ({ offset: (base + i * chunk) % (o.volumeMiB * MiB), data: data(i + round) }))
  await rig.nbd.flush()
  const ms = msSince(t0)
  // cores the agents and this client kept busy during the timed window (the host has os.availableParallelism())
  const cores = (pids.reduce((a: number, p) => a + cpuSeconds(p), 0) + cpuSeconds(process.pid) - cpu0) / (ms / 1000)
  let lagBytes = 0
  if (rig.kind !== 'none') {
    const st = await rig.c.status('a')
    const p = peer(st, 'b')
    lagBytes = p.lagBytes
    if (p.state !== 'streaming') throw new Error(`${rig.kind}: standby is ${p.state} after the run (${p.lastError ?? ''})`)
    if (rig.kind === 'sync' && p.ackedSeq !== st.headSeq) throw new Error(`sync standby acked ${p.ackedSeq} of ${st.headSeq} after the run`)
    // an async standby may still be applying: let it finish outside the timed window so it does not slow the next run
    await rig.c.waitInSync('b', 120_000)
  }
  return { mibps: mibPerSec(n * chunk, ms), lagBytes, cores }
}

const SELF = fileURLToPath(import.meta.url)

/**
 * The raw-pipe server (a child process): accepts one connection, writes every
 * 1 MiB it receives with fs.writeSync, fdatasync every 16 MiB, acks each MiB
 * with one byte, and after `total` bytes does a last fdatasync and sends 'F'.
 */
async function pipeServer(file: string, total: number): Promise<void> {
  const fd = fs.openSync(file, 'w')
  const server = net.createServer((sock) => {
    sock.setNoDelay(true)
    let parts: Buffer[] = []
    let have = 0
    let pos = 0
    sock.on('data', (d: Buffer) => {
      parts.push(d)
      have += d.length
      while (have >= MiB) {
        const all = parts.length === 1 ? parts[0] : Buffer.concat(parts)
        fs.writeSync(fd, all, 0, MiB, pos)
        pos += MiB
        have -= MiB
        parts = have > 0 ? [all.subarray(MiB)] : []
        if (pos % (16 * MiB) === 0) fs.fdatasyncSync(fd)
        if (pos >= total) {
          fs.fdatasyncSync(fd)
          fs.closeSync(fd)
          sock.end('F')
          server.close()
          return
        }
        sock.write('a')
      }
    })
  })
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as net.AddressInfo).port}\n`))
}

async function rawPipe(o: Required<BenchStreamingOptions>): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockrep-pipe-'))
  const total = o.totalMiB * MiB
  const child = spawn(process.execPath, [SELF, '--pipe-server', path.join(dir, 'out'), String(total)], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())))
      child.once('exit', (code) => reject(new Error(`pipe server exited with ${code}`)))
    })
    const sock = net.connect({ host: '127.0.0.1', port, noDelay: true })
    await new Promise<void>((r, j) => sock.once('connect', r).once('error', j))
    const data = payloads(MiB)
    const n = total / MiB
    const t0 = performance.now()
    await new Promise<void>((resolve, reject) => {
      let sent = 0
      let acked = 0
      const pump = () => {
        while (sent < n && sent - acked < o.depth) sock.write(data(sent++))
      }
      sock.on('data', (d: Buffer) => {
        for (const b of d) {
          if (b === 0x46 /* F */) {
            resolve()
            return
          }
          acked++
        }
        pump()
      })
      sock.on('error', reject)
      sock.on('close', () => reject(new Error('pipe server closed early')))
      pump()
    })
    const ms = msSince(t0)
    sock.destroy()
    return mibPerSec(total, ms)
  } finally {
    child.kill('SIGKILL')
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Rounds of the four configurations, interleaved (pipe, no peer, async, sync);
 * MiB/s are medians, ratios are the medians of each round's ratio (a busy
 * shared host drifts between rounds more than within one).
 */
export { benchCatchUp, benchHeadDelta }

export async function benchStreaming(opts: BenchStreamingOptions = {}): Promise<Record<string, number>> {
  const o: Required<BenchStreamingOptions> = {
    totalMiB: opts.totalMiB ?? 512,
    volumeMiB: opts.volumeMiB ?? 1024,
    journalMiB: opts.journalMiB ?? 256,
    depth: opts.depth ?? 8,
    rounds: opts.rounds ?? 3,
  }
  const say = progress('streaming')
  return withCleanup(async (cleanup) => {
    const rigs: Rig[] = []
    for (const k of ['none', 'async', 'sync'] as const) rigs.push(await openRig(k, o, cleanup, say))
    const r: Record<StreamConfig | 'pipe', number[]> = { pipe: [], none: [], async: [], sync: [] }
    let asyncLag = 0
    const busy: Record<StreamConfig, number[]> = { none: [], async: [], sync: [] }
    for (let round = 1; round <= o.rounds; round++) {
      r.pipe.push(await rawPipe(o))
      say(`round ${round}: raw socket pipe ${fmtMiBps(r.pipe.at(-1)!)}`)
      for (const rig of rigs) {
        const { mibps, lagBytes, cores } = await streamOnce(rig, o, round)
        r[rig.kind].push(mibps)
        busy[rig.kind].push(cores)
        if (rig.kind === 'async') asyncLag = Math.max(asyncLag, lagBytes)
        say(`round ${round}: engine, ${rig.kind === 'none' ? 'no peer' : `${rig.kind} standby`}: ${fmtMiBps(mibps)}, ${cores.toFixed(2)} of ${os.availableParallelism()} cores busy (agents + client)${rig.kind === 'async' ? `; standby ${fmtBytes(lagBytes)} behind at the end` : ''}`)
      }
    }
    const per = (a: number[], b: number[]) => median(a.map((x, i) => x / b[i]))
    return {
      totalMiB: o.totalMiB,
      rounds: o.rounds,
      depth: o.depth,
      pipeMiBps: median(r.pipe),
      noPeerMiBps: median(r.none),
      asyncMiBps: median(r.async),
      syncMiBps: median(r.sync),
      asyncRatio: per(r.async, r.none),
      syncRatio: per(r.sync, r.none),
      noPeerVsPipe: per(r.none, r.pipe),
      asyncVsPipe: per(r.async, r.pipe),
      syncVsPipe: per(r.sync, r.pipe),
      asyncRatioMin: Math.min(...r.async.map((x, i) => x / r.none[i])),
      asyncRatioMax: Math.max(...r.async.map((x, i) => x / r.none[i])),
      asyncMaxLagBytes: asyncLag,
      noPeerCores: median(busy.none),
      asyncCores: median(busy.async),
      syncCores: median(busy.sync),
      hostCores: os.availableParallelism(),
    }
  })
}

// ---------------------------------------------------------------------------

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === '--pipe-server') {
    await pipeServer(process.argv[3], Number(process.argv[4]))
  } else {
    const which = process.argv.slice(2)
    const all = which.length === 0
    if (all || which.includes('streaming')) console.log('streaming', await benchStreaming())
    if (all || which.includes('head-delta')) console.log('head-delta', await benchHeadDelta())
    if (all || which.includes('catch-up')) console.log('catch-up', await benchCatchUp())
  }
}
