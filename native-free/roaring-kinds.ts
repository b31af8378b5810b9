/**
 * The three Roaring container kinds over the low 16 bits of a value, and the
 * helpers that build and convert them. An array holds at most 4096 sorted
 * values; above that a bitset of 65536 bits; a run container holds
 * (start, length - 1) pairs, as the portable format does.
 */
export const ARRAY_MAX = 4096
export const BITSET_WORDS = 2048
export const BITSET_BYTES = 8192

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
export function grown(cap: number, need: number, max: number): number {
  const next = cap < 64 ? cap * 2 : cap + (cap >>> 2)
  return Math.min(max, Math.max(need, next, 4))
}

/** Index of x in vals[0, n), or -(insertion point) - 1. */
export function search(vals: Uint16Array, n: number, x: number): number {
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

export function setRange(w: Uint32Array, lo: number, hi: number): void {
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

export function clearRange(w: Uint32Array, lo: number, hi: number): void {
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

export function countWords(w: Uint32Array): number {
  let c = 0
  for (let i = 0; i < BITSET_WORDS; i++) if (w[i] !== 0) c += popcount32(w[i])
  return c
}

export function fullRun(): RunContainer {
  return new RunContainer(65536, 1, Uint16Array.of(0, 65535))
}

export function toWords(c: Container): Uint32Array {
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

export function wordsToArray(w: Uint32Array, card: number): ArrayContainer {
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
export function fromWords(w: Uint32Array, card: number): Container | null {
  if (card === 0) return null
  if (card === 65536) return fullRun()
  return card <= ARRAY_MAX ? wordsToArray(w, card) : new BitsetContainer(card, w)
}
