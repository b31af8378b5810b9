/**
 * Seeds and run counts for the randomized tests. Every random test takes its
 * seed from here and prints it, so a failure replays with
 * `PROPERTY_SEED=<seed> npx tap test/<file>.test.ts`; `PROPERTY_RUNS` scales
 * the number of runs (a multiplier: 1 in `npm test`, more for a long run).
 */

/** The seed for `name`: PROPERTY_SEED when set, else a fixed default; printed. */
export function testSeed(name: string, fallback = 0x5eed): number {
  const env = process.env.PROPERTY_SEED
  const seed = env !== undefined && env !== '' ? Number(env) >>> 0 : fallback >>> 0
  if (env !== undefined && env !== '' && !Number.isFinite(Number(env))) throw new Error(`PROPERTY_SEED must be a number, got ${env}`)
  process.stdout.write(`# ${name}: seed ${seed} (replay with PROPERTY_SEED=${seed})\n`)
  return seed
}

/** The run-count multiplier from PROPERTY_RUNS (default 1). */
export function runScale(): number {
  const n = Number(process.env.PROPERTY_RUNS ?? '1')
  return Number.isFinite(n) && n > 0 ? n : 1
}

/** `base` runs scaled by PROPERTY_RUNS. */
export function runs(base: number): number {
  return Math.max(1, Math.round(base * runScale()))
}

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** Seeded random bytes. */
export function randomBytesFrom(r: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256)
  return b
}
