/**
 * Bounded soak (`npm run soak`): a primary and two standbys as agent
 * processes; continuous random writes through NBD while a random standby is
 * SIGKILLed and restarted every few seconds. At the end (writes stopped, every
 * standby back in sync) all volumes must be byte-identical and every
 * acknowledged write must read back with its content. Prints the catch-up
 * modes the primary chose and their counts. Exit code 1 on any failure.
 *
 *   node dist/scripts/soak.js [--minutes 5] [--protocol sync|async] [--size-mib 256] [--journal-mib 128] [--seed 1]
 */
import fs from 'node:fs'
import { Cluster } from '../src/demo/local-cluster.js'
import type { NodeStatus } from '../src/agent/status-types.js'
import { MiB, fmtBytes, fmtMiBps, fmtMs, mibPerSec, msSince, progress, withCleanup, xorshift } from './bench-lib.js'

interface SoakOptions {
  minutes: number
  protocol: 'sync' | 'async'
  sizeMiB: number
  journalMiB: number
  seed: number
}

function parseArgs(argv: string[]): SoakOptions {
  const o: SoakOptions = { minutes: 5, protocol: 'sync', sizeMiB: 256, journalMiB: 128, seed: 1 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const v = argv[i + 1]
    if (a === '--minutes') o.minutes = Number(v)
    else if (a === '--protocol' && (v === 'sync' || v === 'async')) o.protocol = v
    else if (a === '--size-mib') o.sizeMiB = Number(v)
    else if (a === '--journal-mib') o.journalMiB = Number(v)
    else if (a === '--seed') o.seed = Number(v)
    else throw new Error(`unknown argument ${a} ${v ?? ''}\nusage: soak.js [--minutes N] [--protocol sync|async] [--size-mib N] [--journal-mib N] [--seed N]`)
    i++
  }
  if (!(o.minutes > 0) || !(o.sizeMiB >= 16) || !(o.journalMiB >= 1)) throw new Error('bad --minutes, --size-mib or --journal-mib')
  return o
}

const BS = 4096
/** stamp of a block whose last write failed: its content is unknown, not checked */
const UNKNOWN = 0xffffffff

/** The content of `block` as written by write `id`: (id, block) then a fill byte, so a stale or misplaced block is caught. */
function fillBlock(buf: Buffer, at: number, id: number, block: number): void {
  buf.fill((id * 31 + block) & 0xff, at, at + BS)
  buf.writeUInt32BE(id, at)
  buf.writeUInt32BE(block, at + 4)
}

function expectedBlock(id: number, block: number): Buffer {
  const b = Buffer.alloc(BS)
  if (id !== 0) fillBlock(b, 0, id, block)
  return b
}

/** Blocks whose content differs between two volume files, with the write id each one holds (its first 4 bytes). */
function differingBlocks(fa: string, fb: string, blocks: number): { block: number; a: number; b: number }[] {
  const out: { block: number; a: number; b: number }[] = []
  const a = fs.openSync(fa, 'r')
  const b = fs.openSync(fb, 'r')
  const chunk = 256
  const x = Buffer.alloc(chunk * BS)
  const y = Buffer.alloc(chunk * BS)
  try {
    for (let first = 0; first < blocks; first += chunk) {
      fs.readSync(a, x, 0, x.length, first * BS)
      fs.readSync(b, y, 0, y.length, first * BS)
      for (let i = 0; i < chunk; i++) {
        const bx = x.subarray(i * BS, (i + 1) * BS)
        const by = y.subarray(i * BS, (i + 1) * BS)
        if (!bx.equals(by)) out.push({ block: first + i, a: bx.readUInt32BE(0), b: by.readUInt32BE(0) })
      }
    }
  } finally {
    fs.closeSync(a)
    fs.closeSync(b)
  }
  return out
}

async function soak(o: SoakOptions): Promise<boolean> {
  const say = progress('soak')
  const size = o.sizeMiB * MiB
  const blocks = size / BS
  return withCleanup(async (cleanup) => {
    const standbys = ['b', 'c']
    const c = await Cluster.create(cleanup, {
      nodes: ['a', ...standbys],
      size,
      journalSize: o.journalMiB * MiB,
      protocol: o.protocol,
      extra: Object.fromEntries(['a', ...standbys].map((n) => [n, { log: { level: process.env.BLOCKREP_CLUSTER_LOG ?? 'info' } }])),
    })
    say(`cluster in ${c.dir}: primary a, standbys b and c (${o.protocol}), ${fmtBytes(size)} volume, ${o.journalMiB} MiB journal, ${o.minutes} min`)
    await c.initAll()
    for (const n of ['a', ...standbys]) await c.start(n)
    for (const n of standbys) await c.waitInSync(n, 120_000)
    say('standbys in sync')

    // every mode decision the primary makes, seen by polling its status
    const modes = new Map<string, number>()
    const seenAt = new Map<string, number>()
    const modeLog: string[] = []
    const noteModes = (st: NodeStatus) => {
      for (const p of st.peers) {
        const m = p.lastMode
        if (!m || seenAt.get(p.node) === m.at) continue
        seenAt.set(p.node, m.at)
        modes.set(m.mode, (modes.get(m.mode) ?? 0) + 1)
        modeLog.push(`${p.node}: ${m.mode} (${m.blocks} blocks)`)
        say(`primary chose ${m.mode} for ${p.node}: ${m.reason}`)
      }
    }
    noteModes(await c.status('a'))

    const nbd = await c.nbd('a')
    cleanup.teardown(() => nbd.close())
    const stamp = new Uint32Array(blocks)
    const busy = new Uint8Array(blocks)
    const rnd = xorshift(o.seed)
    let nextId = 1
    let acked = 0
    let ackedBytes = 0
    let failed = 0
    let stop = false
    const t0 = performance.now()
    const deadline = Date.now() + o.minutes * 60_000

    const writer = async () => {
      const inflight = new Set<Promise<void>>()
      while (!stop) {
        const n = rnd() < 0.7 ? 1 : 16
        let first = Math.floor(rnd() * (blocks - n + 1))
        // no two writes in flight touch the same block, so the acknowledged content of every block is known
        for (let tries = 0; busy.subarray(first, first + n).some((x) => x !== 0) && tries < 8; tries++) first = Math.floor(rnd() * (blocks - n + 1))
        if (busy.subarray(first, first + n).some((x) => x !== 0)) {
          await Promise.race(inflight)
          continue
        }
        const id = nextId++
        const data = Buffer.allocUnsafe(n * BS)
        for (let i = 0; i < n; i++) fillBlock(data, i * BS, id, first + i)
        busy.fill(1, first, first + n)
        const p: Promise<void> = nbd.write(first * BS, data).then(
          () => {
            stamp.fill(id, first, first + n)
            acked++
            ackedBytes += n * BS
          },
          (e: Error) => {
            stamp.fill(UNKNOWN, first, first + n)
            if (failed++ < 5) say(`write ${id} failed: ${e.message}`)
          },
        )
        const q = p.finally(() => {
          busy.fill(0, first, first + n)
          inflight.delete(q)
        })
        inflight.add(q)
        if (inflight.size >= 16) await Promise.race(inflight)
      }
      await Promise.all(inflight)
    }

    const poller = async () => {
      while (!stop) {
        noteModes(await c.status('a').catch(() => ({ peers: [] }) as unknown as NodeStatus))
        await new Promise((r) => setTimeout(r, 200))
      }
    }

    let kills = 0
    const chaos = async () => {
      const crnd = xorshift(o.seed * 7919)
      while (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, Math.min(deadline - Date.now(), 4000 + crnd() * 8000)))
        if (Date.now() >= deadline) break
        const victim = standbys[Math.floor(crnd() * standbys.length)]
        const down = 200 + crnd() * 4000
        const st = await c.status('a')
        const p = st.peers.find((x) => x.node === victim)
        await c.kill(victim, 'SIGKILL')
        kills++
        say(`SIGKILL ${victim} (kill #${kills}; it was ${p?.state}, acked ${p?.ackedSeq} of ${st.headSeq}); down ${fmtMs(down)}; ${acked} writes acked so far`)
        await new Promise((r) => setTimeout(r, down))
        await c.start(victim)
      }
    }

    const writing = writer()
    const polling = poller()
    try {
      await chaos()
    } finally {
      stop = true
      await writing
    }
    const ms = msSince(t0)
    say(`writes stopped: ${acked} acknowledged (${fmtBytes(ackedBytes)}, ${fmtMiBps(mibPerSec(ackedBytes, ms))}), ${failed} failed; ${kills} kills`)
    for (const n of standbys) await c.waitInSync(n, 300_000)
    await polling
    noteModes(await c.status('a'))
    say('every standby in sync; comparing volumes')

    let ok = failed === 0
    const shas = await Promise.all(['a', ...standbys].map((n) => c.sha(n)))
    const identical = shas.every((s) => s === shas[0])
    say(identical ? `volumes identical (sha256 ${shas[0].slice(0, 16)}…)` : `VOLUMES DIFFER: ${shas.map((s, i) => `${['a', ...standbys][i]} ${s.slice(0, 16)}`).join(', ')}`)
    ok &&= identical
    if (!identical) {
      for (const n of standbys) {
        const diff = differingBlocks(c.node('a').data, c.node(n).data, blocks)
        if (diff.length === 0) continue
        say(`${n} differs from a in ${diff.length} blocks; first: ${diff.slice(0, 8).map((d) => `block ${d.block} (acked write ${stamp[d.block]}; a holds ${d.a}, ${n} holds ${d.b})`).join(', ')}`)
      }
    }

    // every acknowledged write reads back through NBD with its content (and never-written blocks read as zeros)
    let bad = 0
    let checked = 0
    const chunk = 256
    for (let first = 0; first < blocks; first += chunk) {
      const got = await nbd.read(first * BS, chunk * BS)
      for (let i = 0; i < chunk; i++) {
        const id = stamp[first + i]
        if (id === UNKNOWN) continue
        checked++
        if (!got.subarray(i * BS, (i + 1) * BS).equals(expectedBlock(id, first + i))) {
          if (bad++ < 5) say(`block ${first + i}: expected write ${id}, read ${got.readUInt32BE(i * BS)}/${got.readUInt32BE(i * BS + 4)}`)
        }
      }
    }
    say(`${checked} blocks checked through NBD, ${bad} wrong`)
    ok &&= bad === 0

    console.log()
    console.log(`soak ${o.minutes} min, protocol ${o.protocol}: ${acked} writes acknowledged (${fmtBytes(ackedBytes)}, ${fmtMiBps(mibPerSec(ackedBytes, ms))}), ${failed} failed, ${kills} standby kills`)
    console.log(`modes chosen: ${[...modes].map(([m, n]) => `${m} ${n}`).join(', ')}`)
    console.log(`in order: ${modeLog.join('; ')}`)
    console.log(`volumes identical: ${identical}; acknowledged blocks wrong: ${bad} of ${checked}`)
    console.log(ok ? 'SOAK PASS' : 'SOAK FAIL')
    if (!ok) {
      // keep the volumes and the agents' logs for a post-mortem
      process.env.BLOCKREP_KEEP_DIR = '1'
      console.log(`kept ${c.dir} (agent logs: a.log, b.log, c.log)`)
    }
    return ok
  })
}

const ok = await soak(parseArgs(process.argv.slice(2)))
process.exitCode = ok ? 0 : 1
