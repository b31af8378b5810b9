import t from 'tap'
import { readFileSync, writeFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { FileStore } from '../src/control/file-store.js'
import { isCode } from '../src/util/errors.js'
import { runStoreConformance, doc } from './helpers/store-conformance.js'

t.test('file store - conformance', async (t) => {
  runStoreConformance(t, async (tt) => {
    const path = join(tt.testdir(), 'controller-state.json')
    return { open: () => FileStore.open(path) }
  })
})

t.test('file store - writes whole files: the state on disk is valid JSON after every put, no temp file left', async (t) => {
  const path = join(t.testdir(), 'controller-state.json')
  const s = await FileStore.open(path)
  t.teardown(() => s.close())
  const lead = await s.campaign('ctl/x', 1000)
  let v: number | null = null
  const puts: Promise<unknown>[] = []
  for (let r = 1; r <= 20; r++) {
    v = await s.putVolume(lead, doc('vol0', r), v)
    puts.push(s.putPosition(lead, { volume: 'vol0', node: `n${r % 3}`, role: 'standby', epoch: 1, headSeq: r, consistent: true, ackedSeqs: {}, available: true, lastSeenAt: r }))
    const onDisk = JSON.parse(readFileSync(path, 'utf8'))
    t.equal(onDisk.volumes.vol0.value.revision, r, `revision ${r} on disk once putVolume resolved`)
  }
  await Promise.all(puts)
  const onDisk = JSON.parse(readFileSync(path, 'utf8'))
  t.equal(Object.keys(onDisk.positions.vol0).length, 3, 'coalesced position writes all landed')
  t.same(readdirSync(join(path, '..')).filter(f => f.endsWith('.tmp')), [], 'no temp file left behind')
})

t.test('file store - a damaged file is refused with a clear error naming it', async (t) => {
  const path = join(t.testdir(), 'controller-state.json')
  writeFileSync(path, '{"format": "blockrep-controller-state/1", "versi')
  try {
    await FileStore.open(path)
    t.fail('opened a damaged store')
  } catch (err) {
    t.ok(isCode(err, 'ERR_STORE_UNAVAILABLE'), 'ERR_STORE_UNAVAILABLE')
    t.match((err as Error).message, path, 'names the file')
  }
  writeFileSync(path, '{"hello": 1}')
  await t.rejects(FileStore.open(path), { code: 'ERR_STORE_UNAVAILABLE' }, 'a JSON file of another kind is refused')
})

t.test('file store - two controllers cannot share the file: the second is refused naming the lock', async (t) => {
  const path = join(t.testdir(), 'controller-state.json')
  const a = await FileStore.open(path)
  const b = await FileStore.open(path)
  t.teardown(async () => { await a.close(); await b.close() })
  await a.campaign('ctl/a', 1000)
  await t.rejects(b.campaign('ctl/b', 1000), { code: 'ERR_LOCK_HELD', message: /another controller .*cannot share/ })
})
