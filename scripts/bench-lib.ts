import { randomBytes } from 'node:crypto'
import type { NodeStatus, PeerStatus } from '../src/agent/status-types.js'
/**
 * Shared helpers for the benchmark scripts: timing, MiB/s formatting, a
 * teardown collector for the local cluster, pipelined NBD writes, and the
 * summary-table printer `npm run bench` ends with.
 */
import type { NbdClient } from '../src/client/nbd-client.js'
import type { Teardown } from '../src/demo/local-cluster.js'

export const KiB = 1024
export const MiB = 1024 * 1024
export const GiB = 1024 * MiB

/** Milliseconds since `t0` (a `performance.now()` value). */
export function msSince(t0: number): number {
  return performance.now() - t0
}

/** Runs `f` and returns its result with the wall time in ms. */
export async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now()
  const value = await f()
  return { value, ms: msSince(t0) }
}

export function mibPerSec(bytes: number, ms: number): number {
  return bytes / MiB / (ms / 1000)
}

export function fmtMiBps(x: number): string {
  return `${x.toFixed(1)} MiB/s`
}

export function fmtBytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`
  if (n >= MiB) return `${(n / MiB).toFixed(2)} MiB`
  if (n >= KiB) return `${(n / KiB).toFixed(1)} KiB`
  return `${n} B`
}

export function fmtMs(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

/** A progress line on stderr, prefixed with the bench name and the elapsed time. */
export function progress(name: string): (msg: string) => void {
  const t0 = performance.now()
  return (msg) => process.stderr.write(`[${name} +${(msSince(t0) / 1000).toFixed(1)}s] ${msg}\n`)
}

/**
 * Collects cleanup functions (what `Cluster.create` registers) and runs them,
 * newest first, in `run()` — call it in a `finally`.
 */
export class Cleanup implements Teardown {
  private readonly fns: (() => unknown)[] = []

  teardown(fn: () => unknown): void {
    this.fns.push(fn)
  }

  async run(): Promise<void> {
    while (this.fns.length > 0) {
      const f = this.fns.pop()!
      try {
        await f()
      } catch (e) {
        process.stderr.write(`cleanup failed: ${(e as Error).message}\n`)
      }
    }
  }
}

/** Runs `body` with a fresh Cleanup and always runs the cleanup after. */
export async function withCleanup<T>(body: (c: Cleanup) => Promise<T>): Promise<T> {
  const c = new Cleanup()
  try {
    return await body(c)
  } finally {
    await c.run()
  }
}

/** xorshift32: the same sequence for the same seed. Returns floats in [0, 1). */
export function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 4294967296
  }
}

/**
 * Issues `count` writes through `nbd` with at most `depth` in flight;
 * `next(i)` gives the offset and the buffer of write i. Resolves once all are
 * acknowledged.
 */
export async function pipelinedWrites(nbd: NbdClient, count: number, depth: number, next: (i: number) => { offset: number; data: Buffer }): Promise<void> {
  const inflight = new Set<Promise<void>>()
  let failed: unknown = null
  for (let i = 0; i < count && failed === null; i++) {
    const { offset, data } = next(i)
    const p: Promise<void> = nbd
      .write(offset, data)
      .catch((e: unknown) => {
        failed ??= e
      })
      .finally(() => inflight.delete(p))
    inflight.add(p)
    if (inflight.size >= depth) await Promise.race(inflight)
  }
  await Promise.all(inflight)
  if (failed !== null) throw failed
}

/** One line of the summary table. `higherIsBetter`: PASS when ratio >= target, else when ratio <= target. */
export interface Row {
  name: string
  figure: string
  baseline: string
  ratio: number
  target: number
  higherIsBetter: boolean
  /** a row that is information only (no target): printed with "-" */
  info?: boolean
  note?: string
}

export function passed(r: Row): boolean {
  if (r.info) return true
  if (!Number.isFinite(r.ratio)) return false
  return r.higherIsBetter ? r.ratio >= r.target : r.ratio <= r.target
}

/** A plain-text table with a header row; columns padded to the widest cell. */
export function table(header: string[], rows: string[][], rightAlign: boolean[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) => cells.map((c, i) => (rightAlign[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd()
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

/** The summary table `npm run bench` prints: name, figure, baseline, ratio, target, PASS/FAIL. */
export function summaryTable(rows: Row[]): string {
  return table(
    ['benchmark', 'figure', 'baseline', 'ratio', 'target', 'result'],
    rows.map((r) => [
      r.name,
      r.figure,
      r.baseline,
      Number.isFinite(r.ratio) ? (r.ratio >= 100 ? r.ratio.toFixed(0) : r.ratio.toFixed(2)) : 'n/a',
      r.info || r.figure === 'error' ? '-' : `${r.higherIsBetter ? '>=' : '<='} ${r.target}`,
      r.info ? 'info' : passed(r) ? 'PASS' : 'FAIL',
    ]),
    [false, true, true, true, false, false],
  )
}

/** Agents log at warn in the benches (BLOCKREP_CLUSTER_LOG=info for more). */
export const log = { level: process.env.BLOCKREP_CLUSTER_LOG ?? 'warn' }

export function peer(st: NodeStatus, id: string): PeerStatus {
  const p = st.peers.find((x) => x.node === id)
  if (!p) throw new Error(`${st.node} has no peer ${id}`)
  return p
}

/** A pool of random bytes: write i takes a `len` window at a varying offset (no two neighbours equal, no per-write randomBytes cost). */
export function payloads(len: number): (i: number) => Buffer {
  const pool = randomBytes(len * 9)
  return (i) => pool.subarray((i % 8) * len + (i % 7) * 512, (i % 8) * len + (i % 7) * 512 + len)
}
