import t from 'tap'
import {
  computeEta, createProgressDisplay, etaFromSamples, formatBlockRanges, formatDuration, progressLine, RateWindow, renderPlan, renderStatus, renderVerifyResult,
} from '../src/cli/format-status.js'
import { lastModeRows } from '../src/cli/render-status.js'
import type { NodeStatus } from '../src/agent/status-types.js'

t.test('format-status - computeEta from the average since the start', async t => {
  t.same(computeEta({ blocksTotal: 1000, blocksDone: 250, bytesDone: 250 * 4096, startedAt: 0, now: 5000 }), { rateBytesPerSec: 250 * 4096 / 5, blocksPerSec: 50, etaSeconds: 15 })
  t.same(computeEta({ blocksTotal: 1000, blocksDone: 0, bytesDone: 0, startedAt: 0, now: 5000 }), { rateBytesPerSec: 0, blocksPerSec: 0, etaSeconds: null }, 'no rate yet')
  t.equal(computeEta({ blocksTotal: 10, blocksDone: 10, bytesDone: 40960, startedAt: 0, now: 1000 }).etaSeconds, 0, 'done')
  t.equal(computeEta({ blocksTotal: 0, blocksDone: 0, bytesDone: 0, startedAt: 0, now: 0 }).etaSeconds, 0, 'nothing to do')
  t.equal(computeEta({ blocksTotal: 10, blocksDone: 5, bytesDone: 5, startedAt: 1000, now: 1000 }).etaSeconds, null, 'no time elapsed')
})

t.test('format-status - windowed ETA follows speed changes', async t => {
  const e = etaFromSamples([{ t: 0, blocksDone: 0, bytesDone: 0 }, { t: 10_000, blocksDone: 100, bytesDone: 409600 }, { t: 12_000, blocksDone: 500, bytesDone: 2048000 }], 1500)
  t.equal(e.blocksPerSec, 500 / 12)
  t.equal(Math.round(e.etaSeconds as number), 24)
  t.equal(etaFromSamples([], 10).etaSeconds, null)
  t.equal(etaFromSamples([{ t: 0, blocksDone: 5, bytesDone: 0 }, { t: 1000, blocksDone: 5, bytesDone: 0 }], 10).etaSeconds, null, 'stalled')
  const w = new RateWindow(5000)
  for (let s = 0; s <= 20; s++) w.push({ t: s * 1000, blocksDone: s < 10 ? s * 10 : 100 + (s - 10) * 100, bytesDone: 0 })
  t.equal(w.estimate(2100).blocksPerSec, 100, 'only the last 5 s count')
  t.equal(w.estimate(2100).etaSeconds, 10)
  w.push({ t: 21_000, blocksDone: 3, bytesDone: 0 })
  t.equal(w.estimate(100).etaSeconds, null, 'progress going backwards starts a new window')
})

t.test('format-status - durations and block ranges', async t => {
  t.equal(formatDuration(null), '?')
  t.equal(formatDuration(0.4), '0s')
  t.equal(formatDuration(42), '42s')
  t.equal(formatDuration(187), '3m07s')
  t.equal(formatDuration(7380), '2h03m')
  t.equal(formatDuration(4 * 86400 + 7200), '4d02h')
  t.equal(formatBlockRanges([1, 2, 3, 7, 9, 10]), '1-3, 7, 9-10')
  t.equal(formatBlockRanges([]), '')
  t.equal(formatBlockRanges([1, 3, 5, 7], 2), '1, 3 … and 2 more ranges')
  t.equal(renderVerifyResult({ peer: 'b', blocksCompared: 8, differingBlocks: [], seconds: 0.2 }), 'verify b: 8 blocks compared in 0s, no differences\n')
})

t.test('format-status - progress line uses reported rate, else computes it', async t => {
  const p = { blocksTotal: 100, blocksDone: 50, bytesDone: 50 * 4096, startedAt: 0, rateBytesPerSec: 0, etaSeconds: null }
  t.equal(progressLine(p, 10_000), '50/100 blocks (50.0%), 200 KiB at 20.0 KiB/s, ETA 10s')
  t.equal(progressLine({ ...p, rateBytesPerSec: 4096, etaSeconds: 99 }, 10_000), '50/100 blocks (50.0%), 200 KiB at 4.00 KiB/s, ETA 1m39s')
})

t.test('format-status - status and plan tables', async t => {
  const s: NodeStatus = {
    node: 'b', volumeId: 'v', role: 'standby', epoch: 1, headSeq: 5, consistent: false, size: 4096 * 10, blockSize: 4096,
    journal: { tailSeq: 1, headSeq: 5, capacity: 2 ** 20, used: 0 }, peers: [], nbd: { address: '127.0.0.1:1', readOnly: true, connections: 0 }, upSince: 0,
  }
  const out = renderStatus(s, { now: 61_000 })
  t.match(out, 'node        b (standby, epoch 1)')
  t.match(out, 'consistent  no (a resync is incomplete)')
  t.match(out, 'nbd         127.0.0.1:1 read-only, 0 connections')
  t.match(out, 'up          1m01s')
  t.match(out, 'no peers configured')
  t.equal(renderPlan([]), 'no peers configured\n')
  t.equal(renderPlan([{ node: 'a', mode: 'FULL', reason: 'never synced', blocks: 10, bytes: 40960 }]), 'PEER  MODE  BLOCKS  BYTES     REASON\na     FULL  10      40.0 KiB  never synced\n')
})

t.test('format-status - plain progress display throttles lines and prints completion', async t => {
  let out = ''
  const d = createProgressDisplay({ write: s => (out += s) }, false, 5000)
  const fig = (done: number) => ({ blocksTotal: 10, blocksDone: done, bytesDone: done * 4096, startedAt: 0, rateBytesPerSec: 4096, etaSeconds: 10 - done })
  d.update('b', 'verify b', fig(1), 1000)
  d.update('b', 'verify b', fig(2), 2000)
  d.update('b', 'verify b', fig(7), 6500)
  d.update('b', 'verify b', fig(10), 7000)
  d.update('b', 'verify b', fig(10), 8000)
  d.stop()
  t.equal(out.split('\n').filter(Boolean).length, 3)
  t.match(out, 'verify b: 1/10 blocks (10.0%)')
  t.match(out, 'verify b: 10/10 blocks (100.0%)')
})

t.test('format-status - last mode once: mode, rule and figures, then the reason without them', async t => {
  const full = lastModeRows({ mode: 'FULL', reason: 'FULL (rule 1): the standby never completed a sync and it has no resync-remaining bitmap to resume from; sending every block (16384 blocks, 67108864 bytes)', blocks: 16384, bytes: 64 * 2 ** 20, at: 0 }, 2000)
  t.same(full, [
    ['last mode', 'FULL (rule 1), 16384 blocks, 64.0 MiB, 2s ago'],
    ['', 'the standby never completed a sync and it has no resync-remaining bitmap to resume from; sending every block'],
  ])
  const none = lastModeRows({ mode: 'NONE', reason: 'NONE (rule 3): both heads are at seq 60 on the same history and the standby is consistent', blocks: 0, bytes: 0, at: 0 }, 0)
  t.same(none[0], ['last mode', 'NONE (rule 3), 0 blocks, 0 B, 0s ago'])
  t.equal(none[1]?.[1], 'both heads are at seq 60 on the same history and the standby is consistent')
  t.same(lastModeRows({ mode: 'BITMAP', reason: 'free text', blocks: 1, bytes: 4096, at: 0 }, 0), [['last mode', 'BITMAP, 1 block, 4.00 KiB, 0s ago'], ['', 'free text']])
  t.same(lastModeRows(null, 0), [['last mode', '-']])
})

t.test('format-status - a fault now is apart from an old error; a standby shows who dials it', async t => {
  const base = {
    node: 'b', volumeId: '', role: 'primary' as const, epoch: 1, headSeq: 100, consistent: true, size: 4096 * 10, blockSize: 4096,
    journal: { tailSeq: 1, headSeq: 100, capacity: 2 ** 20, used: 0 }, nbd: null, upSince: 0,
  }
  const peer = {
    node: 'x', address: '10.0.0.2:7801', protocol: 'sync' as const, lastMode: null, ackedSeq: 60, lagSeq: 40, lagBytes: 163840, bitmapBlocks: 0,
    resync: null, bytesSent: 0, direction: 'outgoing' as const,
  }
  const down = renderStatus({ ...base, peers: [{ ...peer, state: 'connecting', stateSince: 50_000, lastError: 'connect ECONNREFUSED', lastErrorAt: 55_000, fault: 'connect ECONNREFUSED', ackedConfirmed: false }] }, { now: 60_000 })
  t.match(down, 'volume      (id not known yet: adopted from the primary at the first sync)')
  t.match(down, 'peer x  10.0.0.2:7801  sync  (this node dials it)')
  t.match(down, 'state         connecting for 10s')
  t.match(down, 'fault         connect ECONNREFUSED (5s ago)')
  t.notMatch(down, 'last error', 'the fault is the last error: not twice')
  t.match(down, 'acked seq     60 (recorded before this agent started; x has not confirmed it since)')
  t.match(down, 'lag           at most 40 writes, 160 KiB (until x confirms its position)')
  const up = renderStatus({ ...base, peers: [{ ...peer, state: 'streaming', stateSince: 0, lastError: 'connect ECONNREFUSED', lastErrorAt: 0, fault: null, ackedConfirmed: true }] }, { now: 3_600_000 })
  t.notMatch(up, /\n\s+fault/)
  t.match(up, 'last error    connect ECONNREFUSED (1h00m ago, before the link came up)')
  t.match(up, 'acked seq     60\n')
  const standby = renderStatus({
    ...base, role: 'standby',
    peers: [{
      ...peer, direction: 'incoming', state: 'disconnected', stateSince: 0, lastError: 'a refused this node: REFUSE (rule 0): size differs', lastErrorAt: 1000,
      fault: 'a refused this node: REFUSE (rule 0): size differs', contact: { at: 2000, reachable: true, role: 'primary', error: null },
    }],
  }, { now: 4000 })
  t.match(standby, 'peer x  10.0.0.2:7801  sync  (x dials this node)')
  t.match(standby, 'fault      a refused this node: REFUSE (rule 0): size differs (3s ago)')
  t.match(standby, 'contact    answered as primary (2s ago)')
  t.notMatch(standby, 'acked seq', 'no primary-side figures on a standby')
  t.match(renderStatus({ ...base, warnings: ['config role ignored'], peers: [] }, { now: 0 }), 'warning     config role ignored')
})
