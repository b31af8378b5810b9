import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { CLI } from './helpers/cluster.js'
import { renderStep, renderSummary, shortReason, EXPECTED_MODES } from '../src/demo/demo.js'
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

t.test('demo - blockrep demo --json goes FULL, FULL, HEAD_DELTA, BITMAP, FULL, ends identical and removes its folder', async (t) => {
  const r = await demo(['--json'], 120_000)
  t.equal(r.signal, null, 'not killed by the 120 s timeout')
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
    steps, sha256: { a: 'ab'.repeat(32), b: 'ab'.repeat(32), c: 'ab'.repeat(32) }, identical: true, seconds: 12.3, error: null,
  }
  const ok = renderSummary(base)
  t.match(ok, /^volumes identical: yes/m)
  t.match(ok, /modes FULL → FULL → HEAD_DELTA → BITMAP → FULL: as expected/)
  t.match(ok, /^ok in 12\.3s; agents stopped, temp folder removed$/m)
  const bad = renderSummary({ ...base, ok: false, identical: false, sha256: { ...base.sha256, c: 'cd'.repeat(32) }, error: 'timed out' })
  t.match(bad, /^failed: timed out$/m)
  t.match(bad, /^volumes identical: NO$/m)
  t.match(bad, /--keep/)
  t.match(renderSummary({ ...base, kept: true }), /kept \/tmp\/blockrep-x/)
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
