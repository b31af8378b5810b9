/**
 * Catch-up benchmarks over real agent processes on loopback:
 *
 *   head-delta  bytes on the wire to catch a crashed standby up by HEAD_DELTA,
 *               over the payload bytes of the writes it missed
 *   catch-up    time to catch up 1% dirty 4 KiB blocks of a 4 GiB volume by
 *               BITMAP, against a FULL copy of the same volume
 *
 * Run: npx tsc -p . && node dist/scripts/bench-replication.js [head-delta|catch-up]
 */
import fs from 'node:fs'
import { Cluster } from '../src/demo/local-cluster.js'
import { log, peer, payloads, GiB, KiB, MiB, fmtBytes, fmtMs, msSince, pipelinedWrites, progress, withCleanup, xorshift } from './bench-lib.js'

// ---------------------------------------------------------------------------
// 2. HEAD_DELTA bytes on the wire

export interface BenchHeadDeltaOptions {
  /** payload bytes written while the standby is down, in MiB (default 20): half in 4 KiB writes, half in 64 KiB */
  gapMiB?: number
  volumeMiB?: number
  journalMiB?: number
}

export async function benchHeadDelta(opts: BenchHeadDeltaOptions = {}): Promise<Record<string, number>> {
  const o = { gapMiB: opts.gapMiB ?? 20, volumeMiB: opts.volumeMiB ?? 256, journalMiB: opts.journalMiB ?? 64 }
  const say = progress('head-delta')
  return withCleanup(async (cleanup) => {
    const c = await Cluster.create(cleanup, {
      nodes: ['a', 'b'],
      size: o.volumeMiB * MiB,
      journalSize: o.journalMiB * MiB,
      protocol: 'sync',
      extra: { a: { log }, b: { log } },
    })
    await c.initAll()
    await c.start('a')
    await c.start('b')
    await c.waitInSync('b', 120_000)
    say('standby in sync')

    // the handshake alone: a clean restart with nothing to send (NONE)
    await c.kill('b', 'SIGTERM')
    let before = peer(await c.status('a'), 'b').bytesSent
    await c.start('b')
    let st = await c.waitInSync('b')
    const noneMode = peer(st, 'b').lastMode?.mode
    const handshakeBytes = peer(st, 'b').bytesSent - before
    say(`clean restart: ${noneMode}, ${handshakeBytes} bytes sent by the primary`)
    if (noneMode !== 'NONE') throw new Error(`clean restart chose ${noneMode}, expected NONE`)

    await c.kill('b')
    const nbd = await c.nbd('a')
    cleanup.teardown(() => nbd.close())
    const rnd = xorshift(42)
    const half = (o.gapMiB * MiB) / 2
    const sizes: number[] = [...Array<number>(half / (4 * KiB)).fill(4 * KiB), ...Array<number>(half / (64 * KiB)).fill(64 * KiB)]
    for (let i = sizes.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1))
      ;[sizes[i], sizes[j]] = [sizes[j], sizes[i]]
    }
    const gapBytes = sizes.reduce((a, b) => a + b, 0)
    const small = payloads(4 * KiB)
    const big = payloads(64 * KiB)
    await pipelinedWrites(nbd, sizes.length, 16, (i) => {
      const len = sizes[i]
      return { offset: Math.floor(rnd() * ((o.volumeMiB * MiB) / len)) * len, data: len === 4 * KiB ? small(i) : big(i) }
    })
    st = await c.status('a')
    const p0 = peer(st, 'b')
    say(`standby down; wrote ${sizes.length} writes (${fmtBytes(gapBytes)}); lag ${p0.lagSeq} writes, journal tail ${st.journal.tailSeq}, acked ${p0.ackedSeq}`)
    if (st.journal.tailSeq > p0.ackedSeq + 1) throw new Error('the journal no longer holds the gap: raise journalMiB')
    before = p0.bytesSent
    const t0 = performance.now()
    await c.start('b')
    st = await c.waitInSync('b')
    const ms = msSince(t0)
    const p1 = peer(st, 'b')
    const wireBytes = p1.bytesSent - before
    say(`restart: ${p1.lastMode?.mode} (${p1.lastMode?.reason}), ${fmtBytes(wireBytes)} on the wire in ${fmtMs(ms)}`)
    if (p1.lastMode?.mode !== 'HEAD_DELTA') throw new Error(`catch-up chose ${p1.lastMode?.mode}, expected HEAD_DELTA`)
    const [ha, hb] = await Promise.all([c.sha('a'), c.sha('b')])
    if (ha !== hb) throw new Error('volumes differ after HEAD_DELTA')
    return {
      writes: sizes.length,
      gapBytes,
      wireBytes,
      handshakeBytes,
      ratio: wireBytes / gapBytes,
      ratioWithoutHandshake: (wireBytes - handshakeBytes) / gapBytes,
      perWriteOverheadBytes: (wireBytes - handshakeBytes - gapBytes) / sizes.length,
      catchUpMs: ms,
    }
  })
}

// ---------------------------------------------------------------------------
// 3. BITMAP vs FULL catch-up

export interface BenchCatchUpOptions {
  /** volume size in GiB (default 4) */
  volumeGiB?: number
  /** journal in MiB (default 16: smaller than the dirty data, so HEAD_DELTA is out) */
  journalMiB?: number
  /** fraction of the volume's 4 KiB blocks written while the standby is down (default 0.01) */
  dirtyFraction?: number
}

function sameBlocks(fa: string, fb: string, blocks: Iterable<number>, bs: number): number {
  const a = fs.openSync(fa, 'r')
  const b = fs.openSync(fb, 'r')
  const x = Buffer.alloc(bs)
  const y = Buffer.alloc(bs)
  let differ = 0
  try {
    for (const blk of blocks) {
      fs.readSync(a, x, 0, bs, blk * bs)
      fs.readSync(b, y, 0, bs, blk * bs)
      if (!x.equals(y)) differ++
    }
  } finally {
    fs.closeSync(a)
    fs.closeSync(b)
  }
  return differ
}

export async function benchCatchUp(opts: BenchCatchUpOptions = {}): Promise<Record<string, number>> {
  const o = { volumeGiB: opts.volumeGiB ?? 4, journalMiB: opts.journalMiB ?? 16, dirtyFraction: opts.dirtyFraction ?? 0.01 }
  const say = progress('catch-up')
  const bs = 4096
  const size = o.volumeGiB * GiB
  return withCleanup(async (cleanup) => {
    const c = await Cluster.create(cleanup, {
      nodes: ['a', 'b'],
      size,
      journalSize: o.journalMiB * MiB,
      protocol: 'sync',
      extra: { a: { log }, b: { log } },
    })
    await c.initAll()
    await c.start('a')
    let t0 = performance.now()
    await c.start('b')
    let st = await c.waitInSync('b', 300_000)
    const initialMs = msSince(t0)
    say(`first sync of the blank standby: ${peer(st, 'b').lastMode?.mode}, ${fmtMs(initialMs)}`)

    await c.kill('b')
    const nbd = await c.nbd('a')
    cleanup.teardown(() => nbd.close())
    const count = Math.round((size / bs) * o.dirtyFraction)
    const rnd = xorshift(7)
    const data = payloads(bs)
    const written = new Set<number>()
    t0 = performance.now()
    await pipelinedWrites(nbd, count, 32, (i) => {
      const blk = Math.floor(rnd() * (size / bs))
      written.add(blk)
      return { offset: blk * bs, data: data(i) }
    })
    st = await c.status('a')
    say(`standby down; ${count} random 4 KiB writes (${written.size} distinct blocks) in ${fmtMs(msSince(t0))}; journal tail ${st.journal.tailSeq}, standby acked ${peer(st, 'b').ackedSeq}`)
    if (st.journal.tailSeq <= peer(st, 'b').ackedSeq + 1) throw new Error('the journal still holds the gap: lower journalMiB')

    t0 = performance.now()
    await c.start('b')
    const bitmapStartedMs = msSince(t0)
    st = await c.waitInSync('b', 300_000)
    const bitmapMs = msSince(t0)
    const bm = peer(st, 'b').lastMode!
    say(`BITMAP restart: ${bm.mode} (${bm.reason}), ${bm.blocks} blocks, ${fmtMs(bitmapMs)} (agent start ${fmtMs(bitmapStartedMs)})`)
    if (bm.mode !== 'BITMAP') throw new Error(`catch-up chose ${bm.mode}, expected BITMAP`)
    const differ = sameBlocks(c.node('a').data, c.node('b').data, written, bs)
    if (differ > 0) throw new Error(`${differ} written blocks differ after BITMAP`)

    await c.kill('b')
    for (const ext of ['', '.meta', '.journal']) fs.rmSync(c.node('b').data + ext, { force: true })
    await c.init('b')
    t0 = performance.now()
    await c.start('b')
    const fullStartedMs = msSince(t0)
    st = await c.waitInSync('b', 600_000)
    const fullMs = msSince(t0)
    const full = peer(st, 'b').lastMode!
    say(`FULL restart: ${full.mode} (${full.reason}), ${full.blocks} blocks, ${fmtMs(fullMs)} (agent start ${fmtMs(fullStartedMs)})`)
    if (full.mode !== 'FULL') throw new Error(`re-initialised standby chose ${full.mode}, expected FULL`)
    const differFull = sameBlocks(c.node('a').data, c.node('b').data, written, bs)
    if (differFull > 0) throw new Error(`${differFull} written blocks differ after FULL`)
    return {
      volumeBlocks: size / bs,
      writes: count,
      distinctBlocks: written.size,
      initialFullMs: initialMs,
      bitmapMs,
      bitmapBlocks: bm.blocks,
      bitmapBytes: bm.bytes,
      fullMs,
      fullBlocks: full.blocks,
      fullBytes: full.bytes,
      ratio: fullMs / bitmapMs,
      // the same with the agent's start-up (spawn until its admin API answers) taken out of both
      ratioAfterStart: (fullMs - fullStartedMs) / (bitmapMs - bitmapStartedMs),
      agentStartMs: bitmapStartedMs,
      fullAgentStartMs: fullStartedMs,
    }
  })
}
