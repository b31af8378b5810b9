import t from 'tap'
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync, truncateSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NodeStore, defaultPaths } from '../src/replication/node-store.js'
import { reportDivergence, blockRanges } from '../src/replication/divergence-report.js'
import { listBacklog, findBacklog, readBacklogRecords, exportRaw, exportRecords, discardBacklog } from '../src/replication/backlog.js'
import { main } from '../src/cli/main.js'
import { crc32c } from '../src/util/crc32c.js'
import { silentLogger } from '../src/util/log.js'

const BS = 4096

/** A store whose journal holds seqs 1..10; seqs 6..10 are the "backlog" after branch 5. */
function makeBacklog(t: { teardown(fn: () => unknown): void }, policy: 'keep' | 'discard' = 'keep') {
  const dir = mkdtempSync(join(tmpdir(), 'blockrep-backlog-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const data = join(dir, 'a.img')
  const paths = defaultPaths(data)
  NodeStore.init({ ...paths, nodeId: 'a', size: 1024 * BS, blockSize: BS, journalSize: 1024 * 1024, role: 'primary', volumeId: '00000000-0000-4000-8000-000000000001' })
  const store = NodeStore.open(paths)
  for (let seq = 1; seq <= 10; seq++) {
    const zero = seq === 8
    const d = zero ? null : Buffer.alloc(BS, seq)
    const offset = (seq <= 5 ? seq : 100 + seq) * BS
    store.journal.append({ seq, epoch: 1, offset, length: BS, data: d, crc: d ? crc32c(d) : 0 })
    if (d) store.volume.write(offset, d)
  }
  store.journal.syncSync()
  const report = reportDivergence(store, 5, policy, silentLogger())
  store.close()
  return { dir, data, report }
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write
  try {
    const code = await main(['node', 'blockrep', ...args], { out: (s) => (out += s), err: (s) => (err += s) })
    return { code, out, err }
  } finally {
    process.stdout.write = write
    process.exitCode = 0
  }
}

t.test('backlog - the divergence report is kept with seq range, block ranges, bytes and time', async (t) => {
  const { report, data } = makeBacklog(t)
  t.match(report, { node: 'a', branchSeq: 5, fromSeq: 6, toSeq: 10, records: 5, bytes: 5 * BS, ranges: [[106, 111]], blockSize: BS, volumeSize: 1024 * BS, missingSeqs: 0, policy: 'keep' })
  t.ok(report.at > 0)
  const all = listBacklog(data)
  t.equal(all.length, 1)
  t.equal(all[0]!.id, '6-10')
  const recs = readBacklogRecords(all[0]!)
  t.same(recs.map((r) => r.seq), [6, 7, 8, 9, 10], 'records in seq order')
  t.equal(recs[2]!.data, null, 'a zeroed range comes back as zero')
  t.same(recs[0]!.data, Buffer.alloc(BS, 6))
})

t.test('backlog - policy discard keeps nothing (the report is only logged)', async (t) => {
  const { data, report } = makeBacklog(t, 'discard')
  t.equal(report.records, 5)
  t.same(listBacklog(data), [])
})

t.test('backlog - block ranges', async (t) => {
  t.same(blockRanges([]), [])
  t.same(blockRanges([1, 2, 3, 7, 9, 10]), [[1, 4], [7, 8], [9, 11]])
})

t.test('backlog - export raw, export records, discard', async (t) => {
  const { data, dir } = makeBacklog(t)
  const e = findBacklog(data, '6-10')
  const out = join(dir, 'delta.img')
  t.same(exportRaw(e, out, false), { records: 5, bytes: 5 * BS })
  const img = readFileSync(out)
  t.equal(img.length, 1024 * BS)
  t.same(img.subarray(106 * BS, 107 * BS), Buffer.alloc(BS, 6))
  t.same(img.subarray(108 * BS, 109 * BS), Buffer.alloc(BS), 'zeroed range')
  t.same(img.subarray(1 * BS, 2 * BS), Buffer.alloc(BS), 'writes before the branch are not backlog')
  t.throws(() => exportRaw(e, out, false), { code: 'ERR_USAGE', message: /exists/ })
  const files = exportRecords(e, join(dir, 'copy'), false)
  t.same(files, [join(dir, 'copy.json'), join(dir, 'copy.bin')])
  t.same(readFileSync(files[1]!), readFileSync(e.bin!))
  t.throws(() => findBacklog(data, '1-2'), { code: 'ERR_USAGE', message: /there are: 6-10/ })
  discardBacklog(e)
  t.same(listBacklog(data), [])
  t.notOk(existsSync(e.bin!))
})

t.test('backlog - a damaged record file is refused, naming the byte offset', async (t) => {
  const { data } = makeBacklog(t)
  const e = findBacklog(data, '6-10')
  truncateSync(e.bin!, statSync(e.bin!).size - 10)
  t.throws(() => readBacklogRecords(e), { code: 'ERR_JOURNAL_CORRUPT', message: /at byte \d+: record seq 10/ })
  writeFileSync(e.bin!, Buffer.from([0, 0, 0, 3, 0x7b, 0x7b, 0x7b]))
  t.throws(() => readBacklogRecords(e), { code: 'ERR_JOURNAL_CORRUPT', message: /not JSON/ })
  writeFileSync(e.json, '{')
  t.throws(() => listBacklog(data), { code: 'ERR_JOURNAL_CORRUPT' })
})

t.test('backlog - the CLI lists, exports and discards only with --yes', async (t) => {
  const { data, dir } = makeBacklog(t)
  let r = await cli(['backlog', 'list', '--data', data])
  t.equal(r.code, 0)
  t.match(r.out, /backlog 6-10 of node a/)
  t.match(r.out, /seqs\s+6\.\.10 \(branch at 5; 5 records\)/)
  t.match(r.out, /blocks\s+5 × 4.00 KiB: 106-110/)
  r = await cli(['backlog', 'list', '--data', data, '--json'])
  t.match(JSON.parse(r.out), [{ id: '6-10', fromSeq: 6, toSeq: 10, records: 5, bytes: 5 * BS, ranges: [[106, 111]] }])
  r = await cli(['backlog', 'export', '6-10', '--data', data])
  t.equal(r.code, 2, 'export needs --out or --nbd')
  t.match(r.err, /exactly one of --out/)
  r = await cli(['backlog', 'export', '6-10', '--data', data, '--out', join(dir, 'x'), '--format', 'records'])
  t.equal(r.code, 0)
  t.ok(existsSync(join(dir, 'x.bin')))
  r = await cli(['backlog', 'discard', '6-10', '--data', data])
  t.equal(r.code, 2)
  t.match(r.err, /add --yes/)
  t.equal(listBacklog(data).length, 1, 'nothing deleted without --yes')
  r = await cli(['backlog', 'discard', '6-10', '--data', data, '--yes'])
  t.equal(r.code, 0)
  t.match(r.out, /discarded backlog 6-10/)
  r = await cli(['backlog', 'list', '--data', data])
  t.match(r.out, /no backlog/)
})
