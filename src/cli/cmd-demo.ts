import type { Command } from 'commander'
import { DEMO_CONTROL, DEMO_NODES, DemoTeardown, EXPECTED_MODES, renderStep, renderSummary, runDemo } from '../demo/demo.js'
import { renderFailover, renderRejoin } from '../demo/render-act.js'
import type { DemoReport } from '../demo/demo.js'
import type { PeerStatus } from '../agent/status-types.js'
import { effectiveEta, formatDuration } from './format-status.js'
import { BlockrepError } from '../util/errors.js'
import { formatBytes, formatRate, parseSize } from '../util/size.js'

interface DemoFlags {
  size: string
  journalSize: string
  keep?: boolean
  json?: boolean
}

/** `blockrep demo`: the embedded local demo cluster (src/demo/demo.ts). */
export function register(program: Command): void {
  program
    .command('demo')
    .description('run a local 3-node demo: every catch-up mode (FULL, HEAD_DELTA, BITMAP), then a failover under a controller with a client writing through nbd-proxy')
    .option('--size <size>', 'volume size', '64M')
    .option('--journal-size <size>', 'journal ring size (the BITMAP step writes more than this)', '8M')
    .option('--keep', 'keep the temp folder (data files, configs, agent logs) at the end')
    .option('--json', 'print the report as JSON (progress goes to stderr)')
    .addHelpText('after', `
Three agents on loopback in a temp folder: a (primary), b and c (standbys).
Steps 1-5 drive the standbys through every catch-up mode. Steps 6-7 start a
controller (its config and store file in the same folder) and an nbd-proxy,
kill a's machine room while a client writes through the proxy, let the
controller promote b in the other room, check every acknowledged write on b,
and restart the room: a and c rejoin b as standbys.
Exit status 0 when every step chose the expected mode, the failover kept every
acknowledged write, nothing rejoined by FULL and the volumes are byte-identical,
1 otherwise.`)
    .action(async (flags: DemoFlags) => {
      const size = parseSize(flags.size, { field: '--size', code: 'ERR_USAGE' })
      const journalSize = parseSize(flags.journalSize, { field: '--journal-size', code: 'ERR_USAGE' })
      if (size < 1024 * 1024 || size % (64 * 1024) !== 0) {
        throw new BlockrepError('ERR_USAGE', `--size must be a multiple of 64K of at least 1M, got ${size}`, { context: { field: '--size' } })
      }
      if (journalSize < 1024 * 1024 || journalSize > size) {
        throw new BlockrepError('ERR_USAGE', `--journal-size must be at least 1M and at most --size, got ${journalSize}`, { context: { field: '--journal-size' } })
      }
      process.exitCode = await demo({ size, journalSize, keep: flags.keep === true, json: flags.json === true })
    })
}

async function demo(o: { size: number; journalSize: number; keep: boolean; json: boolean }): Promise<number> {
  const out = (s: string): void => void process.stdout.write(s)
  const live = new LiveLine(process.stderr)
  const td = new DemoTeardown()
  let interrupted = false
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) return
    interrupted = true
    live.clear()
    process.stderr.write(`\n${sig}: stopping the agents${o.keep ? '' : ' and removing the temp folder'}\n`)
    void td.run().finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  let report: DemoReport
  try {
    report = await runDemo({ size: o.size, journalSize: o.journalSize, keep: o.keep }, td, {
      ready: ({ dir, nbd }) => {
        if (!o.json) out(header(o.size, o.journalSize, dir, nbd))
      },
      note: (text) => {
        if (!interrupted) live.note(text)
      },
      progress: (p) => {
        if (!interrupted) live.show(p.node, peerLine(p, Date.now()))
      },
      step: (s) => {
        live.clear()
        if (!o.json && !interrupted) out(`${renderStep(s)}\n`)
      },
      act: (which, r) => {
        live.clear()
        const n = EXPECTED_MODES.length + (which === 'failover' ? 1 : 2)
        if (!o.json && !interrupted) out(`${which === 'failover' ? renderFailover(r, n) : renderRejoin(r, n)}\n`)
      },
    })
  } finally {
    live.clear()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
  if (interrupted) return 130
  out(o.json ? `${JSON.stringify(report, null, 2)}\n` : renderSummary(report))
  return report.ok ? 0 : 1
}

function header(size: number, journalSize: number, dir: string, nbd: string): string {
  const what: Record<string, string> = {
    primary: `NBD export ${nbd}`,
    sync: 'a client write completes once it is durable here too',
    async: 'a client write completes once it is on its way here',
  }
  const rows = DEMO_NODES.map((n) => `  ${n.id}  ${n.role.padEnd(7)}  room ${n.room.padEnd(4)}  ${(n.protocol ?? '').padEnd(5)}  ${what[n.protocol ?? 'primary']}`)
  return [
    `blockrep demo: 3 agents on this machine, a ${formatBytes(size)} volume with a ${formatBytes(journalSize)} journal, in ${dir}`,
    ...rows,
    `Steps 6-7: a controller (heartbeat ${DEMO_CONTROL.heartbeatMs} ms, timeout ${DEMO_CONTROL.timeoutMs} ms, lease ${DEMO_CONTROL.leaseMs} ms) fails over when a room goes; a client writes through nbd-proxy.`,
    '',
  ].join('\n') + '\n'
}

/** "b: syncing FULL 43% 120 MiB/s ETA 2s" from the primary's view of a peer. */
export function peerLine(p: PeerStatus, now: number): string {
  const r = p.resync
  if (p.state === 'syncing' && r !== null) {
    const pct = r.blocksTotal > 0 ? Math.floor((r.blocksDone * 100) / r.blocksTotal) : 100
    const { rateBytesPerSec, etaSeconds } = effectiveEta(r, now)
    const round = r.mode === 'BITMAP' ? ` round ${r.round}` : ''
    return `${p.node}: syncing ${r.mode}${round} ${pct}% ${formatRate(rateBytesPerSec)} ETA ${formatDuration(etaSeconds)}`
  }
  if (p.state === 'syncing' || p.state === 'streaming') {
    const mode = p.state === 'syncing' && p.lastMode !== null ? ` ${p.lastMode.mode}` : ''
    // lagBytes is -1 when the journal no longer holds the whole gap
    const bytes = p.lagBytes >= 0 ? ` (${formatBytes(p.lagBytes)})` : ''
    return `${p.node}: ${p.state}${mode}, ${p.lagSeq} writes${bytes} to go`
  }
  return `${p.node}: ${p.state}`
}

/**
 * Progress on stderr: one line redrawn in place on a terminal; otherwise
 * plain lines, when the phase changes or every 2 s.
 */
class LiveLine {
  private shown = false
  private lastPhase = ''
  private lastAt = 0

  constructor(private readonly stream: NodeJS.WriteStream) {}

  private get tty(): boolean {
    return this.stream.isTTY === true
  }

  note(text: string): void {
    if (this.tty) this.draw(`… ${text}`)
    else this.stream.write(`… ${text}\n`)
  }

  show(key: string, line: string): void {
    if (this.tty) return this.draw(line)
    // the phase is the line without its figures
    const phase = `${key}:${line.replace(/[\d.]+/g, '')}`
    const now = Date.now()
    if (phase === this.lastPhase && now - this.lastAt < 2000) return
    this.lastPhase = phase
    this.lastAt = now
    this.stream.write(`${line}\n`)
  }

  clear(): void {
    if (this.tty && this.shown) this.stream.write('\r\x1b[2K')
    this.shown = false
  }

  private draw(line: string): void {
    const width = Math.max(20, (this.stream.columns || 80) - 1)
    this.stream.write(`\r\x1b[2K${line.length > width ? `${line.slice(0, width - 1)}…` : line}`)
    this.shown = true
  }
}
