import t from 'tap'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import { loadControllerConfig, parseControllerConfig } from '../src/control/config.js'
import { openStore, registerStoreScheme } from '../src/control/store-factory.js'
import { FileStore } from '../src/control/file-store.js'
import { BlockrepError } from '../src/util/errors.js'

const node = (id: string, site = 'east', port = 7800) => ({ node: id, site, admin: `127.0.0.1:${port}`, nbd: `127.0.0.1:${port + 1000}` })
const valid = () => ({ listen: '127.0.0.1:7900', volumes: [{ id: 'vol0', nodes: [node('a', 'east', 7800), node('b', 'west', 7801)] }] })

function issues(obj: unknown): string {
  try {
    parseControllerConfig(obj, '/etc/blockrep')
    return ''
  } catch (err) {
    if (!(err instanceof BlockrepError) || err.code !== 'ERR_CONFIG') throw err
    return err.message
  }
}

t.test('controller config - defaults are filled in', async (t) => {
  const cfg = parseControllerConfig(valid(), '/etc/blockrep')
  t.match(cfg, { name: 'controller', listen: '127.0.0.1:7900', heartbeatMs: 500, timeoutMs: 1500, leaseMs: 2000, siteThreshold: 0.5, alarm: null, maxLagSeqs: null, adminToken: null, store: '/etc/blockrep/controller-state.json' })
  t.same(cfg.volumes[0]!.nodes[1], { node: 'b', site: 'west', admin: '127.0.0.1:7801', nbd: '127.0.0.1:8801', adminToken: null, noFailover: false })
  t.equal(parseControllerConfig({ ...valid(), heartbeatMs: 100 }, '/x').leaseMs, 400, 'leaseMs defaults to 4 × heartbeatMs')
  t.same(parseControllerConfig({ ...valid(), alarm: 'https://hooks.example/x' }, '/x').alarm, { webhook: 'https://hooks.example/x' })
  t.same(parseControllerConfig({ ...valid(), alarm: 'logger -t blockrep' }, '/x').alarm, { command: 'logger -t blockrep' })
  t.same(parseControllerConfig({ ...valid(), alarm: { command: 'true' } }, '/x').alarm, { command: 'true' })
  t.equal(parseControllerConfig({ ...valid(), store: 'state/ctl.json' }, '/x').store, '/x/state/ctl.json')
  t.equal(parseControllerConfig({ ...valid(), store: 'etcd://127.0.0.1:2379/blockrep' }, '/x').store, 'etcd://127.0.0.1:2379/blockrep')
})

t.test('controller config - every problem is reported with its field', async (t) => {
  const rows: [unknown, RegExp][] = [
    [{ volumes: valid().volumes }, /listen: required/],
    [{ ...valid(), listen: 'nope' }, /listen: expected "host:port"/],
    [{ ...valid(), heartbeatMs: 0 }, /heartbeatMs: expected an integer/],
    [{ ...valid(), heartbeatMs: 500, timeoutMs: 500 }, /timeoutMs: must be greater than heartbeatMs/],
    [{ ...valid(), heartbeatMs: 500, leaseMs: 600 }, /leaseMs: must be at least 2 × heartbeatMs/],
    [{ ...valid(), siteThreshold: 0 }, /siteThreshold: expected a number above 0 and at most 1/],
    [{ ...valid(), siteThreshold: 1.5 }, /siteThreshold: expected a number above 0 and at most 1/],
    [{ ...valid(), maxLagSeqs: -1 }, /maxLagSeqs: expected an integer ≥ 0/],
    [{ ...valid(), alarm: 'ftp://x' }, /alarm: a webhook must be an http/],
    [{ ...valid(), alarm: { webhook: 'x', command: 'y' } }, /alarm: give exactly one/],
    [{ ...valid(), alarm: { webhook: 'mailto:x' } }, /alarm.webhook: expected an http/],
    [{ ...valid(), volumes: [] }, /volumes: expected a non-empty list/],
    [{ listen: '127.0.0.1:1' }, /volumes: required/],
    [{ ...valid(), volumes: [{ id: 'vol 0', nodes: [node('a')] }] }, /volumes\[0\]\.id: expected/],
    [{ ...valid(), volumes: [{ id: 'v', nodes: [] }] }, /volumes\[0\]\.nodes: expected a non-empty list/],
    [{ ...valid(), volumes: [{ id: 'v', nodes: [node('a', 'e', 1), node('a', 'e', 2)] }] }, /volumes\[0\]\.nodes\[1\]\.node: duplicate node "a"/],
    [{ ...valid(), volumes: [{ id: 'v', nodes: [{ node: 'a', admin: '127.0.0.1:1', nbd: '127.0.0.1:2' }] }] }, /volumes\[0\]\.nodes\[0\]\.site: required/],
    [{ ...valid(), volumes: [{ id: 'v', nodes: [{ ...node('a'), admin: 'x' }] }] }, /volumes\[0\]\.nodes\[0\]\.admin: expected "host:port"/],
    [{ ...valid(), volumes: [{ id: 'v', nodes: [{ ...node('a'), noFailover: 'yes' }] }] }, /nodes\[0\]\.noFailover: expected true or false/],
    [{ ...valid(), volumes: [{ id: 'v', nodes: [{ ...node('a'), sitee: 'x' }] }] }, /nodes\[0\]\.sitee: unknown field \(did you mean "site"\?\)/],
    [{ ...valid(), volumes: [{ id: 'v', nodes: [node('a', 'e', 1)] }, { id: 'w', nodes: [node('b', 'e', 1)] }] }, /volumes\[1\]\.nodes\[0\]\.admin: same admin address/],
    [{ ...valid(), volumes: [{ id: 'v', nodes: [node('a')] }, { id: 'v', nodes: [node('b', 'e', 9)] }] }, /volumes\[1\]\.id: duplicate volume "v"/],
    [{ ...valid(), heartbeats: 1 }, /heartbeats: unknown field \(did you mean "heartbeatMs"\?\)/],
  ]
  for (const [obj, want] of rows) {
    const msg = issues(obj)
    t.match(msg, want, `${want}: ${msg.split('\n').slice(1).join(' ')}`)
  }
  const many = issues({ heartbeatMs: 'x', volumes: 3 })
  t.match(many, /listen: required[\s\S]*heartbeatMs[\s\S]*volumes: expected a non-empty list/, 'all problems at once')
})

t.test('controller config - load from a file; unreadable and unparsable files are named', async (t) => {
  const dir = t.testdir()
  const f = join(dir, 'ctl.json')
  writeFileSync(f, JSON.stringify(valid()))
  t.equal(loadControllerConfig(f).store, join(dir, 'controller-state.json'), 'the default store lives next to the config')
  writeFileSync(f, '{"listen": ')
  t.throws(() => loadControllerConfig(f), { code: 'ERR_CONFIG', message: /cannot parse controller config .*ctl.json/ })
  t.throws(() => loadControllerConfig(join(dir, 'none.json')), { code: 'ERR_CONFIG', message: /cannot read controller config/ })
})

t.test('store factory - a path opens a file store; an unknown scheme is a config error; registered schemes plug in', async (t) => {
  const s = await openStore(join(t.testdir(), 'state.json'))
  t.ok(s instanceof FileStore)
  await s.close()
  await t.rejects(openStore('zk://127.0.0.1:2181'), { code: 'ERR_CONFIG', message: /no store for "zk:\/\/" URLs/ })
  let asked = ''
  registerStoreScheme('mem', async (url) => {
    asked = url
    return FileStore.open(join(t.testdir(), 'mem.json'))
  })
  const m = await openStore('mem://x')
  t.equal(asked, 'mem://x')
  await m.close()
})

t.test('controller config - blockrep controller with a bad config exits 1 naming the field', async (t) => {
  const { run } = await import('./helpers/cluster.js')
  const f = join(t.testdir(), 'ctl.json')
  writeFileSync(f, JSON.stringify({ ...valid(), timeoutMs: 100, heartbeatMs: 500 }))
  try {
    await run(['controller', '--config', f])
    t.fail('it started')
  } catch (err) {
    const e = err as { code: number; stderr: string }
    t.equal(e.code, 1, 'exit 1')
    t.match(e.stderr, /ERR_CONFIG: invalid controller config .*ctl.json:\n {2}- timeoutMs: must be greater than heartbeatMs/)
  }
})
