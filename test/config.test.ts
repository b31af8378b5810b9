import t from 'tap'
import { join } from 'node:path'
import { DEFAULT_TUNABLES, formatHostPort, loadConfig, parseConfig, parseHostPort, redactConfig } from '../src/agent/config.js'
import { BlockrepError, isCode } from '../src/util/errors.js'

const SECRET = 'correct horse battery staple'

function thrown(fn: () => unknown): BlockrepError {
  try {
    fn()
  } catch (err) {
    if (err instanceof BlockrepError) return err
    throw err
  }
  throw new Error('expected a BlockrepError, nothing was thrown')
}

function issuePaths(err: BlockrepError): string[] {
  return (err.context.issues as { path: string }[]).map(i => i.path)
}

t.test('config - minimal config gets every default', async t => {
  const cfg = parseConfig({ node: 'a', data: 'vol.img', secret: SECRET }, '/srv/br')
  t.same(cfg, {
    node: 'a',
    volumeId: null,
    data: '/srv/br/vol.img',
    meta: '/srv/br/vol.img.meta',
    journal: '/srv/br/vol.img.journal',
    role: 'standby',
    roleGiven: false,
    listen: null,
    admin: { host: '127.0.0.1', port: 7800 },
    adminToken: null,
    nbd: null,
    secret: SECRET,
    peers: [],
    tls: null,
    log: { level: 'info', format: null },
    tunables: DEFAULT_TUNABLES,
    source: null,
  })
  t.equal(cfg.tunables.journalSize, 256 * 2 ** 20)
  t.equal(cfg.tunables.divergencePolicy, 'keep')
})

t.test('config - full YAML file: sizes, peers, relative paths, files for secrets', async t => {
  const dir = t.testdir({
    'token': 'tok-123\n',
    'secret': `${SECRET}\n`,
    'a.yaml': [
      'node: a',
      'volumeId: 0F8FAD5B-D9CB-469F-A165-70867728950E',
      'data: data/vol.img',
      'meta: /var/lib/br/a.meta',
      'role: primary',
      'listen: 0.0.0.0:7801',
      'admin: "[::1]:7800"',
      'adminTokenFile: token',
      'nbd: 127.0.0.1:10809',
      'secretFile: ./secret',
      'peers:',
      '  - { node: b, address: "10.0.0.2:7801" }',
      '  - node: c',
      '    address: c.example:7801',
      '    protocol: async',
      'log: { level: debug }',
      'tunables:',
      '  journalSize: 1G',
      '  windowBytes: 16M',
      '  maxBatchBytes: 1048576',
      '  roundShrinkRatio: 0.25',
      '  checksumResync: true',
      '  divergencePolicy: discard',
      '',
    ].join('\n'),
  })
  const cfg = loadConfig(join(dir, 'a.yaml'))
  t.equal(cfg.source, join(dir, 'a.yaml'))
  t.equal(cfg.volumeId, '0f8fad5b-d9cb-469f-a165-70867728950e')
  t.equal(cfg.data, join(dir, 'data/vol.img'))
  t.equal(cfg.meta, '/var/lib/br/a.meta')
  t.equal(cfg.journal, join(dir, 'data/vol.img.journal'))
  t.equal(cfg.role, 'primary')
  t.same(cfg.listen, { host: '0.0.0.0', port: 7801 })
  t.same(cfg.admin, { host: '::1', port: 7800 })
  t.equal(cfg.adminToken, 'tok-123')
  t.equal(cfg.secret, SECRET)
  t.same(cfg.peers, [
    { node: 'b', address: { host: '10.0.0.2', port: 7801 }, protocol: 'sync' },
    { node: 'c', address: { host: 'c.example', port: 7801 }, protocol: 'async' },
  ])
  t.equal(cfg.log.level, 'debug')
  t.equal(cfg.tunables.journalSize, 2 ** 30)
  t.equal(cfg.tunables.windowBytes, 16 * 2 ** 20)
  t.equal(cfg.tunables.maxBatchBytes, 2 ** 20)
  t.equal(cfg.tunables.roundShrinkRatio, 0.25)
  t.equal(cfg.tunables.checksumResync, true)
  t.equal(cfg.tunables.divergencePolicy, 'discard')
  t.equal(cfg.tunables.heartbeatMs, 1000)
  const red = redactConfig(cfg)
  t.equal(red.secret, '<redacted>')
  t.equal(red.adminToken, '<redacted>')
  t.notMatch(JSON.stringify(red), SECRET)
})

t.test('config - JSON and YAML files give the same config', async t => {
  const obj = { node: 'b', data: 'b.img', listen: '127.0.0.1:7802', secret: SECRET, peers: [{ node: 'a', address: '127.0.0.1:7801' }], tunables: { journalSize: '64M' } }
  const dir = t.testdir({ 'b.json': JSON.stringify(obj), 'b.yml': toYaml(obj) })
  const a = loadConfig(join(dir, 'b.json'))
  const b = loadConfig(join(dir, 'b.yml'))
  t.same({ ...a, source: null }, { ...b, source: null })
})

function toYaml(obj: Record<string, unknown>): string {
  // flow style is valid YAML
  return Object.entries(obj).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join('\n') + '\n'
}

t.test('config - every problem is reported at once, by field path', async t => {
  const err = thrown(() => parseConfig({
    data: 42,
    role: 'master',
    listen: '10.0.0.1',
    admin: '::1:7800',
    secret: 'short',
    peers: [{ node: 'b', address: 'x:99999' }, { node: 'b', address: '1.2.3.4:1', protocol: 'semi' }, 'c'],
    log: { level: 'loud' },
    tunables: { windowBytes: '4K', maxBatchBytes: '8K', blockSize: 3000, heartbeatMs: 5000, journalSize: 'big', windowByte: 1 },
    nmae: 'a',
  }, '/x'))
  t.ok(isCode(err, 'ERR_CONFIG'))
  t.same(issuePaths(err).sort(), [
    'admin', 'data', 'listen', 'log.level', 'nmae', 'node',
    'peers[0].address', 'peers[1].node', 'peers[1].protocol', 'peers[2]', 'role', 'secret',
    'tunables.blockSize', 'tunables.journalSize', 'tunables.maxBatchBytes', 'tunables.peerTimeoutMs', 'tunables.windowByte',
  ].sort())
  t.match(err.message, /^invalid config:\n/)
  t.match(err.message, '  - role: expected one of "primary", "standby", got "master"')
  t.match(err.message, '  - nmae: unknown field (did you mean "node"?)')
  t.match(err.message, '  - tunables.windowByte: unknown field (did you mean "windowBytes"?)')
  t.match(err.message, '  - admin: expected "host:port" (IPv6 addresses in brackets: "[::1]:7800")')
  t.match(err.message, '  - secret: must be at least 16 bytes, got 5')
  t.match(err.message, '  - peers[1].node: duplicate peer "b"')
  t.match(err.message, '  - tunables.maxBatchBytes: must not exceed windowBytes (4K)')
})

t.test('config - secret rules', async t => {
  t.match(thrown(() => parseConfig({ node: 'a', data: 'd' }, '/')).message, 'secret: required: the shared replication secret, ≥ 16 bytes (or secretFile)')
  t.match(thrown(() => parseConfig({ node: 'a', data: 'd', secret: SECRET, secretFile: 'f' }, '/')).message, 'secret: give secret or secretFile, not both')
  t.match(thrown(() => parseConfig({ node: 'a', data: 'd', secretFile: 'missing' }, t.testdir({}))).message, /secretFile: cannot read .*missing/)
  t.match(thrown(() => parseConfig({ node: 'a', data: 'd', secretFile: 'empty' }, t.testdir({ empty: '\n' }))).message, /secretFile: .*empty is empty/)
  t.match(thrown(() => parseConfig({ node: 'a', data: 'd', peers: [{ node: 'a', address: 'h:1' }], secret: SECRET }, '/')).message, `peers[0].node: is this node's own id "a"`)
  t.equal(parseConfig({ node: 'a', data: 'd', listen: '0.0.0.0:0', secret: SECRET }, '/').listen?.port, 0)
})

t.test('config - addresses must not collide, admin may be disabled', async t => {
  t.match(thrown(() => parseConfig({ node: 'a', data: 'd', secret: SECRET, listen: '127.0.0.1:7800' }, '/')).message, 'admin: same address as listen (127.0.0.1:7800)')
  t.equal(parseConfig({ node: 'a', data: 'd', admin: null, secret: SECRET }, '/').admin, null)
  t.match(thrown(() => parseConfig({ node: 'a', data: 'd', meta: 'd', secret: SECRET }, '/')).message, 'meta: data, meta and journal must be three different files')
})

t.test('config - unreadable and unparsable files name the file', async t => {
  const dir = t.testdir({ 'bad.yaml': 'node: a\n  data: [', 'bad.json': '{"node": ', 'dup.yaml': 'node: a\nnode: b\n', 'list.yaml': '- a\n' })
  for (const f of ['bad.yaml', 'bad.json', 'dup.yaml']) {
    const err = thrown(() => loadConfig(join(dir, f)))
    t.ok(isCode(err, 'ERR_CONFIG'), f)
    t.match(err.message, `cannot parse config file ${join(dir, f)}`, f)
  }
  t.match(thrown(() => loadConfig(join(dir, 'list.yaml'))).message, '(top level): expected an object, got a list')
  t.match(thrown(() => loadConfig(join(dir, 'nope.yaml'))).message, `cannot read config file ${join(dir, 'nope.yaml')}`)
})

t.test('config - parseHostPort and formatHostPort', async t => {
  t.same(parseHostPort('h.example:80', 'x'), { host: 'h.example', port: 80 })
  t.same(parseHostPort('[fe80::1]:7800', 'x'), { host: 'fe80::1', port: 7800 })
  t.equal(formatHostPort({ host: 'fe80::1', port: 7800 }), '[fe80::1]:7800')
  t.equal(formatHostPort({ host: '10.0.0.1', port: 1 }), '10.0.0.1:1')
  for (const bad of ['h', 'h:', ':80', 'h:0', 'h:65536', 'a b:1', 'h:80:81', 7800]) {
    t.ok(isCode(thrown(() => parseHostPort(bad, '--admin', { code: 'ERR_USAGE' })), 'ERR_USAGE'), String(bad))
  }
  t.same(parseHostPort('h:0', 'x', { allowPortZero: true }), { host: 'h', port: 0 })
})
