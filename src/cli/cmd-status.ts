import { Option } from 'commander'
import type { Command } from 'commander'
import { BlockrepError } from '../util/errors.js'
import { addAdminOptions, adminClientFrom } from './admin-client.js'
import type { AdminCliOptions } from './admin-client.js'
import { createProgressDisplay, renderStatus } from './format-status.js'
import type { NodeStatus } from '../agent/status-types.js'

interface StatusOptions extends AdminCliOptions {
  json?: boolean
  watch?: boolean
  interval: string
}

/** `blockrep status`: the node's figures and one table per peer; resync progress as bars on a terminal. */
export function register(program: Command): void {
  const cmd = program
    .command('status')
    .description('show role, epoch, head, consistency and, per peer, state, last mode, lag and resync progress')
    .option('--json', 'print the status as JSON (plain figures, no bars)')
    .addOption(new Option('--watch', 'after printing, follow the resync (from the primary or the standby) until it is done').conflicts('json'))
    .option('--interval <ms>', 'poll interval for --watch', '1000')
  addAdminOptions(cmd).action(async (opts: StatusOptions) => {
    const client = adminClientFrom(opts)
    const status = await client.status()
    if (opts.json === true) {
      process.stdout.write(`${JSON.stringify(status, null, 2)}\n`)
      return
    }
    const tty = process.stdout.isTTY === true
    // on a terminal the resync figures are drawn as bars below the tables
    process.stdout.write(renderStatus(status, { now: Date.now(), resyncRows: !tty }))
    if (opts.watch !== true) {
      if (tty && status.peers.some(p => p.resync !== null)) {
        const display = createProgressDisplay(process.stdout, true)
        showResyncs(display, status)
        display.stop()
      }
      return
    }
    const interval = parseInterval(opts.interval)
    const display = createProgressDisplay(process.stdout, tty, Math.max(interval, 5000))
    let current = status
    let said = ''
    try {
      while (following(current)) {
        showResyncs(display, current)
        // between rounds, or a standby waiting for its primary: one line whenever the situation changes
        const line = situation(current)
        if (line !== said && !current.peers.some(p => p.resync !== null)) process.stdout.write(`${line}\n`)
        said = line
        await sleep(interval)
        current = await client.status()
      }
    } finally {
      display.stop()
    }
    if (current !== status) process.stdout.write(`\n${renderStatus(current, { now: Date.now(), resyncRows: false })}`)
  })
}

/**
 * Whether `--watch` keeps going: a resync runs or is being agreed (either
 * side), or this node is a standby that is not consistent yet (its resync
 * has not finished, or not started: it waits for its primary).
 */
export function following(s: NodeStatus): boolean {
  if (s.peers.some(p => p.resync !== null || p.state === 'syncing' || p.state === 'handshake')) return true
  return s.role === 'standby' && !s.consistent
}

/** "a: disconnected: a cannot be reached at …" — the peers' states and faults, without ages. */
export function situation(s: NodeStatus): string {
  const peers = s.peers.map(p => `${p.node} ${p.state}${p.fault ? `: ${p.fault}` : ''}`)
  return `${s.node} ${s.role}, ${s.consistent ? 'consistent' : 'inconsistent'}, head ${s.headSeq}${peers.length ? `; ${peers.join('; ')}` : ''}`
}

function showResyncs(display: ReturnType<typeof createProgressDisplay>, s: NodeStatus): void {
  const now = Date.now()
  for (const p of s.peers) {
    if (p.resync !== null) display.update(p.node, `${p.node} ${p.resync.mode} r${p.resync.round}`, p.resync, now)
  }
}

export function parseInterval(v: string): number {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 50) throw new BlockrepError('ERR_USAGE', `--interval: expected milliseconds ≥ 50, got ${JSON.stringify(v)}`)
  return n
}

export function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}
