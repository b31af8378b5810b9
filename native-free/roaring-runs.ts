/**
 * Run-container operations. Runs stay sorted, disjoint and non-adjacent
 * (CRoaring's invariant). A run container turns into an array or bitset as
 * soon as that would serialize smaller, so single adds never blow one up.
 */
import { ARRAY_MAX, ArrayContainer, BITSET_BYTES, BitsetContainer, grown, toWords } from './roaring-kinds.js'
import type { Container, RunContainer } from './roaring-kinds.js'

/** Index of the first run whose end is >= x (n when none). */
export function runAtOrAfter(rc: RunContainer, x: number): number {
  const r = rc.runs
  let lo = 0
  let hi = rc.n
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (r[2 * mid] + r[2 * mid + 1] < x) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** Keeps a run container only while it serializes no larger than the alternative. */
export function settleRun(rc: RunContainer): Container | null {
  if (rc.card === 0) return null
  const runBytes = 2 + 4 * rc.n
  if (rc.card <= ARRAY_MAX) {
    if (runBytes <= 2 * rc.card) return rc
    const vals = new Uint16Array(rc.card)
    let k = 0
    for (let i = 0; i < rc.n; i++) {
      const s = rc.runs[2 * i]
      const e = s + rc.runs[2 * i + 1]
      for (let v = s; v <= e; v++) vals[k++] = v
    }
    return new ArrayContainer(rc.card, vals)
  }
  if (runBytes <= BITSET_BYTES) return rc
  return new BitsetContainer(rc.card, toWords(rc))
}

/** Replaces runs [i, j) with the `count` runs given as (start, end) pairs. */
function spliceRuns(rc: RunContainer, i: number, j: number, pieces: number[]): void {
  const count = pieces.length >>> 1
  const n = rc.n - (j - i) + count
  if (2 * n > rc.runs.length) {
    const bigger = new Uint16Array(2 * grown(rc.runs.length >>> 1, n, 32768))
    bigger.set(rc.runs.subarray(0, 2 * rc.n))
    rc.runs = bigger
  }
  rc.runs.copyWithin(2 * (i + count), 2 * j, 2 * rc.n)
  for (let k = 0; k < count; k++) {
    rc.runs[2 * (i + k)] = pieces[2 * k]
    rc.runs[2 * (i + k) + 1] = pieces[2 * k + 1] - pieces[2 * k]
  }
  rc.n = n
}

export function runAddRange(rc: RunContainer, lo: number, hi: number): Container | null {
  const r = rc.runs
  // runs that overlap or touch [lo, hi] merge into one
  const i = runAtOrAfter(rc, lo - 1)
  let j = i
  let s = lo
  let e = hi
  let removed = 0
  while (j < rc.n && r[2 * j] <= hi + 1) {
    s = Math.min(s, r[2 * j])
    e = Math.max(e, r[2 * j] + r[2 * j + 1])
    removed += r[2 * j + 1] + 1
    j++
  }
  rc.card += e - s + 1 - removed
  spliceRuns(rc, i, j, [s, e])
  return settleRun(rc)
}

export function runRemoveRange(rc: RunContainer, lo: number, hi: number): Container | null {
  const r = rc.runs
  const i = runAtOrAfter(rc, lo)
  let j = i
  const pieces: number[] = []
  let removed = 0
  while (j < rc.n && r[2 * j] <= hi) {
    const s = r[2 * j]
    const e = s + r[2 * j + 1]
    if (s < lo) pieces.push(s, lo - 1)
    if (e > hi) pieces.push(hi + 1, e)
    removed += Math.min(e, hi) - Math.max(s, lo) + 1
    j++
  }
  if (j === i) return rc
  rc.card -= removed
  spliceRuns(rc, i, j, pieces)
  return settleRun(rc)
}
