import cliProgress from 'cli-progress'
import { formatBytes, formatRate } from '../util/size.js'
import type { ProgressFigures, VerifyResult } from '../agent/status-types.js'

/**
 * Human rendering of the admin API's answers: the status tables, the plan,
 * verify results, and progress (cli-progress bars on a terminal, plain
 * throttled lines otherwise). Everything but the progress display is a pure
 * function of its input and the clock value passed in.
 */

export interface EtaInput {
  blocksTotal: number
  blocksDone: number
  bytesDone: number
  /** ms epoch */
  startedAt: number
  /** ms epoch */
  now: number
}

export interface EtaEstimate {
  rateBytesPerSec: number
  blocksPerSec: number
  /** 0 when done; null while nothing is done yet (no rate to go by) */
  etaSeconds: number | null
}

/** Rate and ETA from the average speed since `startedAt`. Pure. */
export function computeEta(p: EtaInput): EtaEstimate {
  const remaining = Math.max(0, p.blocksTotal - p.blocksDone)
  const elapsed = (p.now - p.startedAt) / 1000
  if (elapsed <= 0 || p.blocksDone <= 0) return { rateBytesPerSec: 0, blocksPerSec: 0, etaSeconds: remaining === 0 ? 0 : null }
  const blocksPerSec = p.blocksDone / elapsed
  return {
    rateBytesPerSec: p.bytesDone / elapsed,
    blocksPerSec,
    etaSeconds: remaining === 0 ? 0 : remaining / blocksPerSec,
  }
}

export interface ProgressSample {
  /** ms epoch */
  t: number
  blocksDone: number
  bytesDone: number
}

/**
 * Rate and ETA over a window of samples (oldest to newest), which follows
 * speed changes better than the average since the start. Falls back to null
 * ETA when the window shows no progress. Pure.
 */
export function etaFromSamples(samples: readonly ProgressSample[], blocksTotal: number): EtaEstimate {
  const last = samples[samples.length - 1]
  const first = samples[0]
  if (first === undefined || last === undefined) return { rateBytesPerSec: 0, blocksPerSec: 0, etaSeconds: null }
  const remaining = Math.max(0, blocksTotal - last.blocksDone)
  const dt = (last.t - first.t) / 1000
  const dBlocks = last.blocksDone - first.blocksDone
  if (dt <= 0 || dBlocks <= 0) return { rateBytesPerSec: 0, blocksPerSec: 0, etaSeconds: remaining === 0 ? 0 : null }
  const blocksPerSec = dBlocks / dt
  return {
    rateBytesPerSec: Math.max(0, last.bytesDone - first.bytesDone) / dt,
    blocksPerSec,
    etaSeconds: remaining === 0 ? 0 : remaining / blocksPerSec,
  }
}

/** Keeps the samples of the last `windowMs` for etaFromSamples (used while polling). */
export class RateWindow {
  private samples: ProgressSample[] = []

  constructor(private readonly windowMs = 10_000) {}

  push(s: ProgressSample): void {
    const prev = this.samples[this.samples.length - 1]
    // progress going backwards means a new round or run: start over
    if (prev !== undefined && (s.blocksDone < prev.blocksDone || s.t < prev.t)) this.samples = []
    this.samples.push(s)
    while (this.samples.length > 2 && (this.samples[0] as ProgressSample).t < s.t - this.windowMs) this.samples.shift()
  }

  estimate(blocksTotal: number): EtaEstimate {
    return etaFromSamples(this.samples, blocksTotal)
  }
}

/** "42s", "3m07s", "2h03m", "4d02h"; "?" for null. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '?'
  const s = Math.max(0, Math.round(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${pad2(s % 60)}s`
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad2(Math.floor(s / 60) % 60)}m`
  return `${Math.floor(s / 86400)}d${pad2(Math.floor(s / 3600) % 24)}h`
}

function pad2(n: number): string {
  return String(n).padStart(2, '0')
}

export function percent(done: number, total: number): string {
  if (total <= 0) return '100.0%'
  return `${Math.min(100, (done * 100) / total).toFixed(1)}%`
}

/** Rate and ETA to show: the reported ones, else computed from the average since the start. */
export function effectiveEta(p: ProgressFigures, now: number): { rateBytesPerSec: number; etaSeconds: number | null } {
  if (p.rateBytesPerSec > 0 || p.etaSeconds !== null) return { rateBytesPerSec: p.rateBytesPerSec, etaSeconds: p.etaSeconds }
  const e = computeEta({ ...p, now })
  return { rateBytesPerSec: e.rateBytesPerSec, etaSeconds: e.etaSeconds }
}

/** "600/1203 blocks (49.9%), 2.34 MiB at 1.10 MiB/s, ETA 2s" */
export function progressLine(p: ProgressFigures, now: number): string {
  const { rateBytesPerSec, etaSeconds } = effectiveEta(p, now)
  return `${p.blocksDone}/${p.blocksTotal} blocks (${percent(p.blocksDone, p.blocksTotal)}), ${formatBytes(p.bytesDone)} at ${formatRate(rateBytesPerSec)}, ETA ${formatDuration(etaSeconds)}`
}

export { renderStatus, renderPlan } from './render-status.js'
export type { RenderStatusOptions } from './render-status.js'

/** "3-5, 9, 12-20 … and 4 more ranges" */
export function formatBlockRanges(blocks: readonly number[], maxRanges = 50): string {
  const ranges: [number, number][] = []
  for (const b of blocks) {
    const last = ranges[ranges.length - 1]
    if (last !== undefined && b === last[1] + 1) last[1] = b
    else ranges.push([b, b])
  }
  const shown = ranges.slice(0, maxRanges).map(([a, b]) => (a === b ? String(a) : `${a}-${b}`)).join(', ')
  const more = ranges.length - maxRanges
  return more > 0 ? `${shown} … and ${more} more range${more === 1 ? '' : 's'}` : shown
}

export function renderVerifyResult(r: VerifyResult): string {
  const n = r.differingBlocks.length
  const head = `verify ${r.peer}: ${r.blocksCompared} blocks compared in ${formatDuration(r.seconds)}, ${n === 0 ? 'no differences' : `${n} differing block${n === 1 ? '' : 's'}`}`
  return n === 0 ? `${head}\n` : `${head}\n  ${formatBlockRanges(r.differingBlocks)}\n`
}

/** Live progress of one or more block walks. */
export interface ProgressDisplay {
  update(key: string, label: string, p: ProgressFigures, now: number): void
  /** The last state stays on screen. */
  stop(): void
}

export interface ProgressStream {
  write(s: string): unknown
  isTTY?: boolean
}

/**
 * cli-progress bars when `tty`, else one plain line per key at most every
 * `plainIntervalMs` (and on completion).
 */
export function createProgressDisplay(out: ProgressStream, tty: boolean, plainIntervalMs = 5000): ProgressDisplay {
  return tty ? new BarDisplay(out) : new PlainDisplay(out, plainIntervalMs)
}

class BarDisplay implements ProgressDisplay {
  private readonly multi: cliProgress.MultiBar
  private readonly bars = new Map<string, cliProgress.SingleBar>()

  constructor(out: ProgressStream) {
    this.multi = new cliProgress.MultiBar(
      {
        stream: out as NodeJS.WritableStream,
        format: '{label} [{bar}] {percentage}% {value}/{total} | {rate} | ETA {etaText}',
        barCompleteChar: '#',
        barIncompleteChar: '.',
        barsize: 20,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        fps: 5,
        gracefulExit: true,
      },
      cliProgress.Presets.legacy,
    )
  }

  update(key: string, label: string, p: ProgressFigures, now: number): void {
    const { rateBytesPerSec, etaSeconds } = effectiveEta(p, now)
    const total = Math.max(1, p.blocksTotal)
    const value = p.blocksTotal === 0 ? 1 : Math.min(p.blocksDone, total)
    const payload = { label, rate: formatRate(rateBytesPerSec), etaText: formatDuration(etaSeconds) }
    const bar = this.bars.get(key)
    if (bar === undefined) {
      this.bars.set(key, this.multi.create(total, value, payload))
    } else {
      bar.setTotal(total)
      bar.update(value, payload)
    }
  }

  stop(): void {
    this.multi.stop()
  }
}

class PlainDisplay implements ProgressDisplay {
  private readonly lastAt = new Map<string, number>()

  constructor(
    private readonly out: ProgressStream,
    private readonly intervalMs: number,
  ) {}

  update(key: string, label: string, p: ProgressFigures, now: number): void {
    const last = this.lastAt.get(key)
    const finished = p.blocksDone >= p.blocksTotal
    if (last !== undefined && now - last < this.intervalMs && !finished) return
    if (finished && last === -1) return
    this.lastAt.set(key, finished ? -1 : now)
    this.out.write(`${label}: ${progressLine(p, now)}\n`)
  }

  stop(): void {}
}
