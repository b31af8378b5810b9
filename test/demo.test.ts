import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { CLI } from './helpers/cluster.js'
import { renderStep, renderSummary, shortReason, EXPECTED_MODES } from '../src/demo/demo.js'
import { failoverVerdict, renderFailover, renderRejoin } from '../src/demo/render-act.js'
import type { FailoverActReport } from '../src/demo/failover-act.js'
import type { DemoReport, DemoStep } from '../src/demo/demo.js'
import { peerLine } from '../src/cli/cmd-demo.js'
import type { PeerStatus } from '../src/agent/status-types.js'

interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

function demo(args: string[], timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'demo', ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals }) | null
      resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : null, signal: e?.signal ?? null, stdout, stderr })
    })
  })
}

t.test('demo - blockrep demo --json goes FULL, FULL, HEAD_DELTA, BITMAP, FULL, fails over to the other room without losing a write, ends identical and removes its folder', async (t) => {
  const r = await demo(['--json'], 240_000)
  t.equal(r.signal, null, 'not killed by the 240 s timeout')
  t.equal(r.code, 0, `exit 0 (stderr tail: ${r.stderr.slice(-400)})`)
  const report = JSON.parse(r.stdout) as DemoReport
  t.same(report.steps.map((s) => s.mode), [...EXPECTED_MODES], 'modes in order')
  t.ok(report.steps.every((s) => s.ok && s.reason !== null && s.seconds > 0), 'every step has a reason and a duration')
  const [full, , headDelta, bitmap] = report.steps as [DemoStep, DemoStep, DemoStep, DemoStep]
  t.equal(full.blocks, report.size / report.blockSize, 'FULL sends every block')
  t.ok(headDelta.blocks > 0 && headDelta.bytes < full.bytes / 10, 'HEAD_DELTA moves a little')
  t.ok(bitmap.blocks > 0 && bitmap.blocks < full.blocks, 'BITMAP moves less than the volume')
  t.ok(bitmap.wireBytes >= bitmap.bytes, 'the wire carried at least the planned bytes')
  t.equal(report.identical, true, 'volumes identical')
  t.equal(new Set(Object.values(report.sha256)).size, 1, 'one sha256 for a, b and c')
  t.same(Object.keys(report.sha256).sort(), ['a', 'b', 'c'])

  // steps 6 and 7: the failover act
  const f = report.failover as FailoverActReport
  t.ok(f !== null, 'the report carries the failover act')
  t.equal(f.error, null, `the act ran through (${f.error})`)
  t.equal(f.oldPrimary, 'a')
  t.equal(f.room, 'east')
  t.same(f.killed, ['a', 'c'], 'the whole east room was killed')
  t.equal(f.newPrimary, 'b', 'the controller promoted b, in room west')
  t.equal(f.newRoom, 'west')
  t.ok(f.epoch !== null && f.oldEpoch !== null && f.epoch > f.oldEpoch, `a new epoch (${f.oldEpoch} → ${f.epoch})`)
  t.ok(f.publishedMs !== null && f.publishedMs <= 3 * f.timeoutMs, `published ${f.publishedMs} ms after the kill ≤ 3 × timeoutMs`)
  t.ok(f.writesBeforeKill > 0 && f.writesAcked > f.writesBeforeKill, `the client wrote through nbd-proxy before and after the kill (${f.writesBeforeKill} + ${f.writesAcked - f.writesBeforeKill})`)
  t.equal(f.writeErrors, 0, `no client write failed (${f.errors.join('; ')})`)
  t.equal(f.proxyFollowed, true, 'nbd-proxy followed b in the new epoch')
  t.equal(f.writesMissing, 0, `every one of the ${f.writesAcked} acknowledged writes is on b`)
  t.equal(f.demoted, true, 'a is a standby again')
  t.same(Object.keys(f.rejoinModes).sort(), ['a', 'c'])
  t.notOk(Object.values(f.rejoinModes).includes('FULL'), `a and c rejoined without FULL: ${JSON.stringify(f.rejoinModes)}`)
  t.ok(Object.values(f.rejoinModes).every((m) => m === 'HEAD_DELTA' || m === 'BITMAP' || m === 'NONE'), 'each rejoin mode is an incremental one')
  t.equal(f.identical, true, 'a, b and c identical after the rejoin')
  t.same(Object.keys(f.sha256).sort(), ['a', 'b', 'c'])
  t.equal(f.ok, true)
  t.equal(report.error, null)
  t.equal(report.ok, true)
  t.equal(report.kept, false)
  t.ok(report.dir.length > 0, 'the report names its folder')
  t.notOk(existsSync(report.dir), `temp folder ${report.dir} removed`)
})

t.test('demo - a bad --size is a usage error (exit 2) and starts nothing', async (t) => {
  const r = await demo(['--size', '1000'], 20_000)
  t.equal(r.code, 2)
  t.match(r.stderr, /ERR_USAGE: --size/)
})

const step = (over: Partial<DemoStep> = {}): DemoStep => ({
  n: 3, node: 'b', action: 'b killed; 100 writes (400 KiB); b restarted', expected: 'HEAD_DELTA', mode: 'HEAD_DELTA',
  reason: 'HEAD_DELTA (rule 4): replaying 100 records (seqs 257..356, ~99 blocks, 409600 bytes)', blocks: 99, bytes: 409600,
  wireBytes: 417000, seconds: 1.26, ok: true, ...over,
})

t.test('demo - a step renders on one line with mode, what moved, seconds and the reason', async (t) => {
  const line = renderStep(step())
  t.notMatch(line, /\n/)
  t.match(line, /^3\. b killed; 100 writes \(400 KiB\); b restarted +HEAD_DELTA +99 blocks 400 KiB +1\.3s +rule 4: replaying 100 records/)
  t.match(renderStep(step({ mode: 'BITMAP', ok: false })), /BITMAP \(expected HEAD_DELTA\)/)
  t.match(renderStep(step({ mode: null, reason: null, ok: false })), /no mode \(expected HEAD_DELTA\) +- /)
  t.equal(shortReason('FULL (rule 1): the standby never completed a sync'), 'rule 1: the standby never completed a sync')
  t.equal(shortReason('something else'), 'something else')
})

t.test('demo - the summary says whether the volumes are identical and the modes as expected', async (t) => {
  const steps = EXPECTED_MODES.map((m, i) => step({ n: i + 1, mode: m, expected: m }))
  const base: DemoReport = {
    ok: true, dir: '/tmp/blockrep-x', kept: false, size: 1 << 26, journalSize: 1 << 23, blockSize: 4096, nodes: [], clientBytes: 0,
    steps, sha256: { a: 'ab'.repeat(32), b: 'ab'.repeat(32), c: 'ab'.repeat(32) }, identical: true, failover: act(), seconds: 12.3, error: null,
  }
  const ok = renderSummary(base)
  t.match(ok, /^volumes identical: yes/m)
  t.match(ok, /modes FULL → FULL → HEAD_DELTA → BITMAP → FULL: as expected/)
  t.match(ok, /^failover act: ok \(b promoted 2\.1 s after the kill; 0 of 812 acknowledged writes missing; rejoined without FULL\)$/m)
  t.match(ok, /^ok in 12\.3s; agents stopped, temp folder removed$/m)
  t.match(renderSummary({ ...base, ok: false, failover: act({ ok: false, writesMissing: 3 }) }), /^failover act: FAILED \(3 acknowledged writes missing on b\)$/m)
  t.match(renderSummary({ ...base, ok: false, failover: null }), /^failover act: not run$/m)
  const bad = renderSummary({ ...base, ok: false, identical: false, sha256: { ...base.sha256, c: 'cd'.repeat(32) }, failover: null, error: 'timed out' })
  t.match(bad, /^failed: timed out$/m)
  t.match(bad, /^volumes identical: NO$/m)
  t.match(bad, /--keep/)
  t.match(renderSummary({ ...base, kept: true }), /kept \/tmp\/blockrep-x/)
  const differ = renderSummary({ ...base, ok: false, failover: act({ ok: false, identical: false, sha256: { a: 'ab', b: 'ab', c: 'cd' } }) })
  t.match(differ, /^volumes identical: NO\n {2}a {2}ab\n {2}b {2}ab\n {2}c {2}cd$/m, 'the sha256 line is the end state, after the failover act')
  t.match(differ, /volumes differ after the rejoin/)
})

t.test('demo - the live line shows the resync mode, percentage, rate and ETA', async (t) => {
  const now = 1_000_000
  const peer: PeerStatus = {
    node: 'b', address: '127.0.0.1:1', protocol: 'sync', state: 'syncing', lastMode: null, ackedSeq: 0, lagSeq: 5, lagBytes: 20480, bitmapBlocks: 0,
    resync: { mode: 'FULL', round: 1, blocksTotal: 1000, blocksDone: 430, bytesDone: 430 * 4096, startedAt: now - 1000, rateBytesPerSec: 120 * 1024 * 1024, etaSeconds: 2 },
    lastError: null, bytesSent: 0,
  }
  t.equal(peerLine(peer, now), 'b: syncing FULL 43% 120 MiB/s ETA 2s')
  t.equal(peerLine({ ...peer, resync: { ...peer.resync!, mode: 'BITMAP', round: 2 } }, now), 'b: syncing BITMAP round 2 43% 120 MiB/s ETA 2s')
  t.equal(peerLine({ ...peer, state: 'streaming', resync: null }, now), 'b: streaming, 5 writes (20.0 KiB) to go')
  t.equal(peerLine({ ...peer, state: 'streaming', resync: null, lagBytes: -1 }, now), 'b: streaming, 5 writes to go', 'unknown lag bytes are left out')
  t.equal(peerLine({ ...peer, state: 'handshake', resync: null }, now), 'b: handshake')
})

function act(over: Partial<FailoverActReport> = {}): FailoverActReport {
  return {
    ok: true, controllerConfig: '/tmp/blockrep-x/controller.json', oldPrimary: 'a', room: 'east', killed: ['a', 'c'], newPrimary: 'b', newRoom: 'west',
    oldEpoch: 1, epoch: 2, heartbeatMs: 250, timeoutMs: 1250, leaseMs: 2000, detectedMs: 1400, publishedMs: 2100, firstWriteMs: 2300, maxPauseMs: 2200,
    proxyFollowed: true, writesAcked: 812, writesBeforeKill: 400, writeErrors: 0, errors: [], writesMissing: 0, demoted: true, rejoinSeconds: 3.2,
    rejoinModes: { a: 'BITMAP', c: 'HEAD_DELTA' }, sha256: { a: 'ab', b: 'ab', c: 'ab' }, identical: true, error: null, ...over,
  }
}

t.test('demo - the failover act renders as steps 6 and 7: who was killed, who was promoted and when, the client through the proxy, the rejoin modes', async (t) => {
  t.equal(renderFailover(act(), 6), '6. room east killed (a, c) → controller promoted b (room west) in epoch 2, published 2.1 s after the kill; ' +
    'client through nbd-proxy kept writing: 812 writes, 0 errors, 0 missing; longest pause 2.2 s')
  t.equal(renderRejoin(act(), 7), '7. a and c restarted → a demoted; rejoined b: a by BITMAP, c by HEAD_DELTA in 3.2 s; volumes identical')
  t.match(renderFailover(act({ newPrimary: null, error: 'no new primary published within 12500 ms of the kill' }), 6), /^6\. room east killed \(a, c\) → FAILED: no new primary published/)
  t.match(renderFailover(act({ proxyFollowed: false }), 6), /the proxy did NOT follow/)
  t.equal(renderRejoin(act({ newPrimary: null }), 7), '7. a and c restarted → not reached')
  t.match(renderRejoin(act({ demoted: false, rejoinModes: {}, error: 'timed out waiting for a demoted' }), 7), /a NOT demoted; FAILED: timed out/)
  t.match(failoverVerdict(act({ ok: false, rejoinModes: { a: 'FULL', c: 'HEAD_DELTA' } })), /a rejoin needed FULL/)
  t.match(failoverVerdict(act({ ok: false, writeErrors: 2, errors: ['write 9 (block 9): EIO'] })), /2 client write errors \(first: write 9 \(block 9\): EIO\)/)
})
