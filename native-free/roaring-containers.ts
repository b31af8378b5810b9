/**
 * Operations on one Roaring container (kinds in roaring-kinds.ts, run
 * containers in roaring-runs.ts). Every operation returns the container
 * that now holds the set (the same object, or a converted one), or null once
 * it is empty, so the caller can swap it in its container list. Conversions
 * follow CRoaring: an array past 4096 values becomes a bitset, a bitset at
 * 4096 or fewer becomes an array, a full container becomes one run.
 */
import {
  ARRAY_MAX, ArrayContainer, BITSET_BYTES, BITSET_WORDS, BitsetContainer, Kind, RunContainer,
  clearRange, countWords, fromWords, fullRun, grown, search, setRange, toWords, wordsToArray,
} from './roaring-kinds.js'
import type { Container } from './roaring-kinds.js'
import { runAddRange, runAtOrAfter, runRemoveRange } from './roaring-runs.js'

export { ARRAY_MAX, ArrayContainer, BitsetContainer, Kind, RunContainer, fullRun }
export { popcount32 } from './roaring-kinds.js'
export type { Container } from './roaring-kinds.js'

export function rangeContainer(lo: number, hi: number): Container {
  if (hi - lo < 2) {
    const vals = new Uint16Array(hi - lo + 1)
    for (let i = 0; i < vals.length; i++) vals[i] = lo + i
    return new ArrayContainer(vals.length, vals)
  }
  return new RunContainer(hi - lo + 1, 1, Uint16Array.of(lo, hi - lo))
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
