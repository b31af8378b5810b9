/**
 * The three Roaring container kinds over the low 16 bits of a value, in plain
 * TypeScript. Every operation returns the container that now holds the set
 * (the same object, or a converted one), or null once it is empty, so the
 * caller can swap it in its container list.
 *
 * Kinds follow CRoaring: an array holds at most 4096 sorted values; above
 * that a bitset of 65536 bits; a run container holds (start, length - 1)
 * pairs, made by addRange and by reading run containers from the portable
 * format. A run container turns into an array or bitset as soon as that
 * would serialize smaller, so single adds never blow one up.
 */
export const ARRAY_MAX = 4096
const BITSET_WORDS = 2048
const BITSET_BYTES = 8192

export const Kind = { ARRAY: 0, BITSET: 1, RUN: 2 } as const

export class ArrayContainer {
  readonly kind = Kind.ARRAY
  constructor(public card: number, public vals: Uint16Array) {}
}

export class BitsetContainer {
  readonly kind = Kind.BITSET
  constructor(public card: number, public words: Uint32Array) {}
}

/** `runs` interleaves start and length - 1, as the portable format does; `n` runs are in use. */
export class RunContainer {
  readonly kind = Kind.RUN
  constructor(public card: number, public n: number, public runs: Uint16Array) {}
}

export type Container = ArrayContainer | BitsetContainer | RunContainer

export function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333)
  return (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24)
}

/** Grow gently (x1.25 past 64) so array capacity stays close to cardinality: memory is the budget here. */
function grown(cap: number, need: number, max: number): number {
  const next = cap < 64 ? cap * 2 : cap + (cap >>> 2)
  return Math.min(max, Math.max(need, next, 4))
}

/** Index of x in vals[0, n), or -(insertion point) - 1. */
function search(vals: Uint16Array, n: number, x: number): number {
  let lo = 0
  let hi = n - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const v = vals[mid]
    if (v < x) lo = mid + 1
    else if (v > x) hi = mid - 1
    else return mid
  }
  return -lo - 1
}

/** Index of the first run whose end is >= x (n when none). */
function runAtOrAfter(rc: RunContainer, x: number): number {
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

function setRange(w: Uint32Array, lo: number, hi: number): void {
  const a = lo >>> 5
  const b = hi >>> 5
  const ma = (0xffffffff << (lo & 31)) >>> 0
  const mb = 0xffffffff >>> (31 - (hi & 31))
  if (a === b) {
    w[a] |= ma & mb
    return
  }
  w[a] |= ma
  w.fill(0xffffffff, a + 1, b)
  w[b] |= mb
}

function clearRange(w: Uint32Array, lo: number, hi: number): void {
  const a = lo >>> 5
  const b = hi >>> 5
  const ma = (0xffffffff << (lo & 31)) >>> 0
  const mb = 0xffffffff >>> (31 - (hi & 31))
  if (a === b) {
    w[a] &= ~(ma & mb)
    return
  }
  w[a] &= ~ma
  w.fill(0, a + 1, b)
  w[b] &= ~mb
}

function countWords(w: Uint32Array): number {
  let c = 0
  for (let i = 0; i < BITSET_WORDS; i++) if (w[i] !== 0) c += popcount32(w[i])
  return c
}

export function fullRun(): RunContainer {
  return new RunContainer(65536, 1, Uint16Array.of(0, 65535))
}

export function rangeContainer(lo: number, hi: number): Container {
  if (hi - lo < 2) {
    const vals = new Uint16Array(hi - lo + 1)
    for (let i = 0; i < vals.length; i++) vals[i] = lo + i
    return new ArrayContainer(vals.length, vals)
  }
  return new RunContainer(hi - lo + 1, 1, Uint16Array.of(lo, hi - lo))
}

function toWords(c: Container): Uint32Array {
  if (c.kind === Kind.BITSET) return c.words.slice()
  const w = new Uint32Array(BITSET_WORDS)
  if (c.kind === Kind.ARRAY) {
    const v = c.vals
    for (let i = 0; i < c.card; i++) w[v[i] >>> 5] |= 1 << (v[i] & 31)
  } else {
    const r = c.runs
    for (let i = 0; i < c.n; i++) setRange(w, r[2 * i], r[2 * i] + r[2 * i + 1])
  }
  return w
}

function wordsToArray(w: Uint32Array, card: number): ArrayContainer {
  const vals = new Uint16Array(card)
  let k = 0
  for (let i = 0; i < BITSET_WORDS; i++) {
    let x = w[i]
    while (x !== 0) {
      const t = x & -x
      vals[k++] = (i << 5) | (31 - Math.clz32(t))
      x ^= t
    }
  }
  return new ArrayContainer(card, vals)
}

/** A bitset's best form when it may have dropped to array size. */
function fromWords(w: Uint32Array, card: number): Container | null {
  if (card === 0) return null
  if (card === 65536) return fullRun()
  return card <= ARRAY_MAX ? wordsToArray(w, card) : new BitsetContainer(card, w)
}

/** Keeps a run container only while it serializes no larger than the alternative. */
function settleRun(rc: RunContainer): Container | null {
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

function runAddRange(rc: RunContainer, lo: number, hi: number): Container | null {
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

function runRemoveRange(rc: RunContainer, lo: number, hi: number): Container | null {
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

export function cHas(c: Container, x: number): boolean {
  switch (c.kind) {
    case Kind.ARRAY:
      return search(c.vals, c.card, x) >= 0
    case Kind.BITSET:
      return (c.words[x >>> 5] & (1 << (x & 31))) !== 0
    default: {
      const i = runAtOrAfter(c, x)
      return i < c.n && c.runs[2 * i] <= x
    }
  }
}

export function cAdd(c: Container, x: number): Container {
  switch (c.kind) {
    case Kind.ARRAY: {
      const at = search(c.vals, c.card, x)
      if (at >= 0) return c
      if (c.card === ARRAY_MAX) {
        const b = new BitsetContainer(c.card, toWords(c))
        return cAdd(b, x)
      }
      const pos = -at - 1
      if (c.card === c.vals.length) {
        const bigger = new Uint16Array(grown(c.vals.length, c.card + 1, ARRAY_MAX))
        bigger.set(c.vals.subarray(0, pos))
        bigger.set(c.vals.subarray(pos, c.card), pos + 1)
        c.vals = bigger
      } else {
        c.vals.copyWithin(pos + 1, pos, c.card)
      }
      c.vals[pos] = x
      c.card++
      return c
    }
    case Kind.BITSET: {
      const m = 1 << (x & 31)
      const w = c.words[x >>> 5]
      if ((w & m) === 0) {
        c.words[x >>> 5] = w | m
        c.card++
        if (c.card === 65536) return fullRun()
      }
      return c
    }
    default:
      return cHas(c, x) ? c : (runAddRange(c, x, x) as Container)
  }
}

export function cRemove(c: Container, x: number): Container | null {
  switch (c.kind) {
    case Kind.ARRAY: {
      const at = search(c.vals, c.card, x)
      if (at < 0) return c
      c.vals.copyWithin(at, at + 1, c.card)
      c.card--
      return c.card === 0 ? null : c
    }
    case Kind.BITSET: {
      const m = 1 << (x & 31)
      const w = c.words[x >>> 5]
      if ((w & m) === 0) return c
      c.words[x >>> 5] = w & ~m
      c.card--
      return c.card <= ARRAY_MAX ? wordsToArray(c.words, c.card) : c
    }
    default:
      return runRemoveRange(c, x, x)
  }
}

/** Adds [lo, hi] (inclusive, 16-bit). */
export function cAddRange(c: Container, lo: number, hi: number): Container {
  if (lo === 0 && hi === 65535) return fullRun()
  switch (c.kind) {
    case Kind.ARRAY: {
      const v = c.vals
      const a = search(v, c.card, lo)
      const less = a >= 0 ? a : -a - 1
      const b = search(v, c.card, hi)
      const upto = b >= 0 ? b + 1 : -b - 1
      const greater = c.card - upto
      const card = less + (hi - lo + 1) + greater
      if (card > ARRAY_MAX) {
        const w = toWords(c)
        setRange(w, lo, hi)
        return card === 65536 ? fullRun() : new BitsetContainer(card, w)
      }
      const len = hi - lo + 1
      let vals = v
      if (card <= v.length) {
        v.copyWithin(less + len, upto, c.card)
      } else {
        vals = new Uint16Array(grown(v.length, card, ARRAY_MAX))
        vals.set(v.subarray(0, less))
        vals.set(v.subarray(upto, c.card), less + len)
      }
      for (let k = 0; k < len; k++) vals[less + k] = lo + k
      c.vals = vals
      c.card = card
      return c
    }
    case Kind.BITSET:
      setRange(c.words, lo, hi)
      c.card = countWords(c.words)
      return c.card === 65536 ? fullRun() : c
    default:
      return runAddRange(c, lo, hi) as Container
  }
}

/** Removes [lo, hi] (inclusive, 16-bit). */
export function cRemoveRange(c: Container, lo: number, hi: number): Container | null {
  switch (c.kind) {
    case Kind.ARRAY: {
      const v = c.vals
      const a = search(v, c.card, lo)
      const from = a >= 0 ? a : -a - 1
      const b = search(v, c.card, hi)
      const upto = b >= 0 ? b + 1 : -b - 1
      if (upto === from) return c
      v.copyWithin(from, upto, c.card)
      c.card -= upto - from
      return c.card === 0 ? null : c
    }
    case Kind.BITSET:
      clearRange(c.words, lo, hi)
      return fromWords(c.words, countWords(c.words))
    default:
      return runRemoveRange(c, lo, hi)
  }
}

export function cClone(c: Container): Container {
  switch (c.kind) {
    case Kind.ARRAY:
      return new ArrayContainer(c.card, c.vals.slice(0, c.card))
    case Kind.BITSET:
      return new BitsetContainer(c.card, c.words.slice())
    default:
      return new RunContainer(c.card, c.n, c.runs.slice(0, 2 * c.n))
  }
}

/** a | b; may mutate and return `a`, never mutates or shares `b`. */
export function cOr(a: Container, b: Container): Container {
  if (a.card === 65536) return a
  if (b.card === 65536) return fullRun()
  if (a.kind === Kind.RUN && b.kind === Kind.RUN) {
    let out: Container = a
    for (let i = 0; i < b.n && out.kind === Kind.RUN; i++) {
      out = runAddRange(out, b.runs[2 * i], b.runs[2 * i] + b.runs[2 * i + 1]) as Container
    }
    return out.kind === Kind.RUN ? out : cOr(out, b)
  }
  // array into run: add value by value, so a long run is not blown up into a bitset
  if (a.kind === Kind.RUN && b.kind === Kind.ARRAY) return addAll(a, b)
  if (a.kind === Kind.ARRAY && b.kind === Kind.RUN) return addAll(cClone(b), a)
  if (a.kind === Kind.ARRAY && b.kind === Kind.ARRAY && a.card + b.card <= ARRAY_MAX) {
    return mergeArrays(a, b)
  }
  const w = a.kind === Kind.BITSET ? a.words : toWords(a)
  if (b.kind === Kind.BITSET) {
    for (let i = 0; i < BITSET_WORDS; i++) w[i] |= b.words[i]
  } else if (b.kind === Kind.ARRAY) {
    const v = b.vals
    for (let i = 0; i < b.card; i++) w[v[i] >>> 5] |= 1 << (v[i] & 31)
  } else {
    for (let i = 0; i < b.n; i++) setRange(w, b.runs[2 * i], b.runs[2 * i] + b.runs[2 * i + 1])
  }
  return fromWords(w, countWords(w)) as Container
}

function addAll(into: Container, from: ArrayContainer): Container {
  let out = into
  for (let i = 0; i < from.card; i++) out = cAdd(out, from.vals[i])
  return out
}

function mergeArrays(a: ArrayContainer, b: ArrayContainer): ArrayContainer {
  const x = a.vals
  const y = b.vals
  const out = new Uint16Array(a.card + b.card)
  let i = 0
  let j = 0
  let k = 0
  while (i < a.card && j < b.card) {
    const u = x[i]
    const v = y[j]
    if (u < v) { out[k++] = u; i++ }
    else if (u > v) { out[k++] = v; j++ }
    else { out[k++] = u; i++; j++ }
  }
  while (i < a.card) out[k++] = x[i++]
  while (j < b.card) out[k++] = y[j++]
  a.vals = out
  a.card = k
  return a
}

/** Writes the container's values, offset by `high`, into out[pos...]; returns the next position. */
export function cWrite(c: Container, high: number, out: number[], pos: number): number {
  if (c.kind === Kind.ARRAY) {
    const v = c.vals
    for (let i = 0; i < c.card; i++) out[pos++] = high + v[i]
  } else if (c.kind === Kind.BITSET) {
    const w = c.words
    for (let i = 0; i < BITSET_WORDS; i++) {
      let x = w[i]
      while (x !== 0) {
        const t = x & -x
        out[pos++] = high + ((i << 5) | (31 - Math.clz32(t)))
        x ^= t
      }
    }
  } else {
    const r = c.runs
    for (let i = 0; i < c.n; i++) {
      const e = high + r[2 * i] + r[2 * i + 1]
      for (let v = high + r[2 * i]; v <= e; v++) out[pos++] = v
    }
  }
  return pos
}

/** Bytes this container takes in the portable format (payload only). */
export function cSerializedBytes(c: Container): number {
  return c.kind === Kind.ARRAY ? 2 * c.card : c.kind === Kind.BITSET ? BITSET_BYTES : 2 + 4 * c.n
}

/**
 * V8's cost of one container besides its payload: the container object, the
 * typed array, its ArrayBuffer and backing-store record, and the slots in
 * the key and container lists. Measured on Node 20 (heapUsed + arrayBuffers
 * over 65536 one-value containers: ~275 bytes each, key list included).
 */
export const CONTAINER_OVERHEAD = 250

export function cMemoryBytes(c: Container): number {
  const payload = c.kind === Kind.ARRAY ? c.vals.byteLength : c.kind === Kind.BITSET ? c.words.byteLength : c.runs.byteLength
  return payload + CONTAINER_OVERHEAD
}
