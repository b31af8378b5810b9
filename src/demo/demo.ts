import { rmSync } from 'node:fs'
import { Cluster, randomWrites, waitFor } from './local-cluster.js'
import { runFailoverAct } from './failover-act.js'
import type { FailoverActReport } from './failover-act.js'
import { failoverVerdict } from './render-act.js'
import type { Teardown } from './local-cluster.js'
import type { NbdClient } from '../client/nbd-client.js'
import type { NodeStatus, PeerStatus } from '../agent/status-types.js'
import { formatBytes } from '../util/size.js'

/**
 * `blockrep demo`: three agents on loopback (a primary and two standbys),
 * driven through every catch-up mode the way an operator reaches it, with a
 * report of what each handshake chose and what it moved; then the failover
 * act (failover-act.ts): a controller, a client writing through nbd-proxy,
 * the primary's room killed, a standby in the other room promoted, the room
 * back as standbys. The scenario only; the CLI renders progress and the report.
 */

/** The failover act's timing (controller config); the agents' leaseMarginMs is DEMO_LEASE_MARGIN_MS. */
export const DEMO_CONTROL = { heartbeatMs: 250, timeoutMs: 1500, leaseMs: 2000 } as const
export const DEMO_LEASE_MARGIN_MS = 500

/** The mode each step must end in, in order. */
export const EXPECTED_MODES = ['FULL', 'FULL', 'HEAD_DELTA', 'BITMAP', 'FULL'] as const

export interface DemoNode {
  id: string
  role: 'primary' | 'standby'
  /** machine room: the controller fails over to another room when the primary's room goes */
  room: string
  /** replication protocol from the primary to this standby; null for the primary */
  protocol: 'sync' | 'async' | null
}

export const DEMO_NODES: readonly DemoNode[] = [
  { id: 'a', role: 'primary', room: 'east', protocol: null },
  { id: 'b', role: 'standby', room: 'west', protocol: 'sync' },
  { id: 'c', role: 'standby', room: 'east', protocol: 'async' },
]

export interface DemoStep {
  /** 1-based */
  n: number
  /** the standby the step is about */
  node: string
  /** what was done, in words */
  action: string
  expected: string
  /** what the primary's handshake chose; null when the step failed before it */
  mode: string | null
  /** the handshake's reason, as logged and shown by `blockrep status` */
  reason: string | null
  /** blocks and bytes the handshake planned to move */
  blocks: number
  bytes: number
  /** bytes the primary sent that standby during the step (frames with headers) */
  wireBytes: number
  /** from restarting the standby until the primary reports it streaming at its head */
  seconds: number
  ok: boolean
}

export interface DemoReport {
  ok: boolean
  /** the temp folder; removed at the end unless kept */
  dir: string
  kept: boolean
  size: number
  journalSize: number
  blockSize: number
  nodes: DemoNode[]
  /** bytes written by the client through the primary's NBD export */
  clientBytes: number
  steps: DemoStep[]
  /** sha256 of each node's data file at the end */
  sha256: Record<string, string>
  identical: boolean
  /** steps 6 and 7: the failover act; null when the steps before it failed */
  failover: FailoverActReport | null
  seconds: number
  /** what went wrong, when something did */
  error: string | null
}

/** What the demo tells its caller while it runs. */
export interface DemoHooks {
  /** a sentence about what happens now */
  note?(text: string): void
  /** the primary's view of `peer`, polled while waiting for it to catch up */
  progress?(peer: PeerStatus, status: NodeStatus): void
  /** a step finished (also a failed one) */
  step?(step: DemoStep): void
  /** the cluster exists: its folder and export addresses are known */
  ready?(info: { dir: string; nbd: string }): void
  /** the failover act's failover ('failover', step 6) or rejoin ('rejoin', step 7) is over, or failed */
  act?(which: 'failover' | 'rejoin', report: FailoverActReport): void
}

export interface DemoOptions {
  size: number
  journalSize: number
  /** keep the folder (data files, configs, logs) at the end */
  keep: boolean
  /** give up waiting for one catch-up after this long */
  stepTimeoutMs?: number
  pollMs?: number
}

/** Runs cleanups in reverse order, once; the CLI also calls it on Ctrl-C. */
export class DemoTeardown implements Teardown {
  private readonly fns: (() => unknown)[] = []
  private running: Promise<void> | null = null

  teardown(fn: () => unknown): void {
    this.fns.push(fn)
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      for (const fn of this.fns.reverse()) {
        try {
          await fn()
        } catch {
          // a cleanup that fails must not stop the others
        }
      }
    })()
    return this.running
  }
}

const KiB = 1024

/**
 * Runs the scenario and returns the report; never throws for a failed step
 * (the report says what failed). Cleans up through `td` unless `opts.keep`.
 */
export async function runDemo(opts: DemoOptions, td: DemoTeardown, hooks: DemoHooks = {}): Promise<DemoReport> {
  const t0 = Date.now()
  const note = (s: string): void => hooks.note?.(s)
  const stepTimeoutMs = opts.stepTimeoutMs ?? 90_000
  const pollMs = opts.pollMs ?? 100
  const report: DemoReport = {
    ok: false, dir: '', kept: opts.keep, size: opts.size, journalSize: opts.journalSize, blockSize: 4096,
    nodes: DEMO_NODES.map((n) => ({ ...n })), clientBytes: 0, steps: [], sha256: {}, identical: false, failover: null, seconds: 0, error: null,
  }
  // read by Cluster's own teardown when it removes the folder
  if (opts.keep) process.env.BLOCKREP_KEEP_DIR = '1'
  let nbd: NbdClient | null = null
  try {
    const c = await Cluster.create(td, { nodes: DEMO_NODES.map((n) => n.id), size: opts.size, journalSize: opts.journalSize, tunables: { leaseMarginMs: DEMO_LEASE_MARGIN_MS } })
    report.dir = c.dir
    // the primary's peers with their own protocol: b next door is sync, c in the other room async
    const a = c.node('a')
    c.opts.extra = {
      a: {
        peers: DEMO_NODES.filter((n) => n.role === 'standby').map((n) => ({ node: n.id, address: `127.0.0.1:${c.node(n.id).replPort}`, protocol: n.protocol })),
      },
    }
    c.writeConfig('a')
    hooks.ready?.({ dir: c.dir, nbd: `127.0.0.1:${a.nbdPort}` })

    note('init a (primary), b and c (standbys without a volume id: they adopt a\'s at their first sync)')
    await c.initAll()
    note('start a')
    await c.start('a')
    report.blockSize = (await c.status('a')).blockSize
    nbd = await c.nbd('a')
    const client = nbd

    const write = async (bytes: number, bs: number, seed: number): Promise<number> => {
      const count = Math.max(1, Math.floor(bytes / bs))
      await randomWrites(client, opts.size, count, bs, 16, seed)
      report.clientBytes += count * bs
      return count
    }
    const first = Math.min(opts.size, 16 * 1024 * KiB, Math.max(opts.size / 4, 64 * KiB))
    note(`write ${formatBytes(first)} to a through its NBD export (64 KiB writes at random offsets)`)
    await write(first, 64 * KiB, 1)

    /** Starts `id`, waits until the primary has it streaming at its head after a new handshake, records the step. */
    const catchUp = async (id: string, action: string, start: () => Promise<void>): Promise<DemoStep> => {
      const expected = EXPECTED_MODES[report.steps.length] ?? '?'
      const step: DemoStep = { n: report.steps.length + 1, node: id, action, expected, mode: null, reason: null, blocks: 0, bytes: 0, wireBytes: 0, seconds: 0, ok: false }
      report.steps.push(step)
      const sentBefore = peerOf(await c.status('a'), id).bytesSent
      const since = Date.now()
      try {
        await start()
        const st = await waitCaughtUp(c, id, since, stepTimeoutMs, pollMs, hooks)
        const p = peerOf(st, id)
        step.mode = p.lastMode?.mode ?? null
        step.reason = p.lastMode?.reason ?? null
        step.blocks = p.lastMode?.blocks ?? 0
        step.bytes = p.lastMode?.bytes ?? 0
        step.wireBytes = p.bytesSent - sentBefore
        step.ok = step.mode === expected
      } finally {
        step.seconds = (Date.now() - since) / 1000
        hooks.step?.(step)
      }
      return step
    }
    /** SIGKILL, as a crash; waits until the primary has noticed. */
    const crash = async (id: string): Promise<void> => {
      await c.kill(id)
      await waitFor(async () => peerOf(await c.status('a'), id).state !== 'streaming', 10_000, `a to notice that ${id} is gone`)
    }

    await catchUp('b', 'b starts empty', () => c.start('b'))
    await catchUp('c', 'c starts empty', () => c.start('c'))

    note('kill b (SIGKILL) and write a little while it is down')
    await crash('b')
    const few = await write(Math.min(100 * 4 * KiB, opts.journalSize / 8), 4 * KiB, 2)
    await catchUp('b', `b killed; ${few} writes (${formatBytes(few * 4 * KiB)}); b restarted`, () => c.start('b'))

    note(`kill b again and write more than the ${formatBytes(opts.journalSize)} journal holds`)
    await crash('b')
    const ackedB = peerOf(await c.status('a'), 'b').ackedSeq
    let wrapped = 0
    for (let i = 0; i < 8; i++) {
      wrapped += await write(opts.journalSize / 2, 64 * KiB, 3 + i)
      const st = await c.status('a')
      if (st.journal.tailSeq > ackedB + 1) break
    }
    await catchUp('b', `b killed; ${formatBytes(wrapped * 64 * KiB)} written, journal wrapped; b restarted`, () => c.start('b'))

    note('kill c, delete its data, metadata and journal, init it again')
    await crash('c')
    for (const ext of ['', '.meta', '.journal']) rmSync(c.node('c').data + ext, { force: true })
    await catchUp('c', 'c wiped, re-initialised, restarted', async () => {
      await c.init('c')
      await c.start('c')
    })

    note('flush, wait until b and c are at a\'s head, compare the data files (sha256)')
    await client.flush()
    for (const n of DEMO_NODES) if (n.role === 'standby') await waitCaughtUp(c, n.id, 0, stepTimeoutMs, pollMs, {})
    for (const n of DEMO_NODES) report.sha256[n.id] = await c.sha(n.id)
    report.identical = new Set(Object.values(report.sha256)).size === 1

    await nbd.close().catch(() => {})
    nbd = null
    const sites = Object.fromEntries(DEMO_NODES.map((n) => [n.id, n.room]))
    report.failover = await runFailoverAct(c, td, { sites, ...DEMO_CONTROL, writes: 400, note, phase: (which, r) => hooks.act?.(which, r) })
  } catch (err) {
    report.error = err instanceof Error ? err.message : String(err)
  } finally {
    await nbd?.close().catch(() => {})
    await td.run()
  }
  report.seconds = (Date.now() - t0) / 1000
  report.ok = report.error === null && report.identical && report.steps.length === EXPECTED_MODES.length && report.steps.every((s) => s.ok) && report.failover?.ok === true
  return report
}

function peerOf(st: NodeStatus, id: string): PeerStatus {
  const p = st.peers.find((x) => x.node === id)
  if (!p) throw new Error(`the primary has no peer ${id}`)
  return p
}

/** The primary reports `id` streaming at its head, after a handshake made at or after `since` (ms epoch). */
async function waitCaughtUp(c: Cluster, id: string, since: number, timeoutMs: number, pollMs: number, hooks: DemoHooks): Promise<NodeStatus> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const st = await c.status('a')
    const p = peerOf(st, id)
    hooks.progress?.(p, st)
    const fresh = p.lastMode !== null && p.lastMode.at >= since
    if (fresh && p.state === 'streaming' && p.resync === null && p.ackedSeq === st.headSeq) return st
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${id} to catch up (state ${p.state}, acked ${p.ackedSeq}, head ${st.headSeq}, last error ${p.lastError ?? '-'})`)
    }
    await new Promise((r) => setTimeout(r, pollMs))
  }
}

/** "rule 4: replaying 100 records …": the reason without its "MODE (rule N): " lead, which the mode column already says. */
export function shortReason(reason: string | null): string {
  if (reason === null) return '-'
  const m = /^[A-Z_]+ \(rule (\d+)\): (.*)$/s.exec(reason)
  return m ? `rule ${m[1]}: ${m[2]}` : reason
}

/** One line per step: what was done, the mode, what moved, how long, why. */
export function renderStep(s: DemoStep): string {
  const mode = s.mode ?? 'no mode'
  const flag = s.ok ? '' : ` (expected ${s.expected})`
  const moved = s.mode === null ? '-' : `${s.blocks} blocks ${formatBytes(s.bytes)}`
  return `${s.n}. ${s.action.padEnd(56)}  ${`${mode}${flag}`.padEnd(10)}  ${moved.padEnd(23)}  ${`${s.seconds.toFixed(1)}s`.padStart(5)}  ${shortReason(s.reason)}`
}

/** The lines after the steps. */
export function renderSummary(r: DemoReport): string {
  const lines: string[] = []
  if (r.error !== null) lines.push(`failed: ${r.error}`)
  // the end state: after the failover act when it got that far, else after step 5
  const end = r.failover !== null && Object.keys(r.failover.sha256).length > 0 ? r.failover : r
  const shas = Object.entries(end.sha256)
  if (shas.length > 0) {
    lines.push(end.identical
      ? `volumes identical: yes (sha256 ${shas[0]?.[1].slice(0, 16)}… on ${shas.map(([id]) => id).join(', ')})`
      : `volumes identical: NO\n${shas.map(([id, h]) => `  ${id}  ${h}`).join('\n')}`)
  } else {
    lines.push('volumes identical: not checked')
  }
  const modes = r.steps.map((s) => s.mode ?? '-').join(' → ')
  lines.push(`modes ${modes}: ${r.steps.length === EXPECTED_MODES.length && r.steps.every((s) => s.ok) ? 'as expected' : `expected ${EXPECTED_MODES.join(' → ')}`}`)
  lines.push(`failover act: ${failoverVerdict(r.failover)}`)
  lines.push(`${r.ok ? 'ok' : 'FAILED'} in ${r.seconds.toFixed(1)}s; ${r.kept ? `kept ${r.dir} (data files, configs, logs)` : 'agents stopped, temp folder removed'}`)
  if (!r.ok && !r.kept) lines.push('run again with --keep to keep the agents\' logs')
  return `${lines.join('\n')}\n`
}
