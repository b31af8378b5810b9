import t from 'tap'
import { Writable } from 'node:stream'
import { componentLogger, createLogger, resolveLogFormat, resolveLogLevel } from '../src/util/log.js'
import { isCode } from '../src/util/errors.js'

function sink(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  let text = ''
  const stream = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk)
      cb()
    },
  })
  return { stream, lines: () => text.split('\n').filter(Boolean).map(l => JSON.parse(l) as Record<string, unknown>) }
}

t.test('log - level: env beats config beats "info"; bad levels are config errors', async t => {
  t.equal(resolveLogLevel(undefined, {}), 'info')
  t.equal(resolveLogLevel('warn', {}), 'warn')
  t.equal(resolveLogLevel('warn', { BLOCKREP_LOG_LEVEL: 'debug' }), 'debug')
  t.equal(resolveLogLevel('warn', { BLOCKREP_LOG_LEVEL: '' }), 'warn')
  for (const [cfg, env, where] of [['loud', {}, 'log.level'], ['info', { BLOCKREP_LOG_LEVEL: 'LOUD' }, 'BLOCKREP_LOG_LEVEL']] as const) {
    try {
      resolveLogLevel(cfg, env)
      t.fail('should throw')
    } catch (err) {
      t.ok(isCode(err, 'ERR_CONFIG'))
      t.match((err as Error).message, `${where}: expected one of fatal, error, warn, info, debug, trace, silent`)
    }
  }
})

t.test('log - JSON lines with node, component child loggers, level filtering', async t => {
  const s = sink()
  const log = createLogger({ level: 'info', node: 'a', destination: s.stream, env: {} })
  log.debug('hidden')
  componentLogger(log, 'replication').info({ peer: 'b' }, 'link up')
  componentLogger(createLogger({ destination: s.stream, env: {} }), 'nbd', 'a2').warn('slow')
  const [first, second] = s.lines()
  t.match(first, { level: 30, node: 'a', component: 'replication', peer: 'b', msg: 'link up' })
  t.match(String(first?.time), /^\d{4}-\d\d-\d\dT/)
  t.match(second, { level: 40, node: 'a2', component: 'nbd', msg: 'slow' })
  t.equal(s.lines().length, 2)
})

t.test('log - format: --log beats BLOCKREP_LOG_FORMAT beats the config beats the terminal test', async t => {
  t.equal(resolveLogFormat({ isTTY: true, env: {} }), 'pretty', 'a person at a terminal')
  t.equal(resolveLogFormat({ isTTY: false, env: {} }), 'json', 'a supervisor or a pipe')
  t.equal(resolveLogFormat({ configured: 'pretty', isTTY: false, env: {} }), 'pretty')
  t.equal(resolveLogFormat({ configured: 'pretty', isTTY: false, env: { BLOCKREP_LOG_FORMAT: 'json' } }), 'json')
  t.equal(resolveLogFormat({ flag: 'pretty', configured: 'json', isTTY: false, env: { BLOCKREP_LOG_FORMAT: 'json' } }), 'pretty')
  t.throws(() => resolveLogFormat({ configured: 'xml', env: {} }), /log\.format: expected one of json, pretty, got "xml"/)
})

t.test('log - pretty: one readable line per event with node and component', async t => {
  let text = ''
  const stream = new Writable({ write(chunk, _enc, cb) { text += String(chunk); cb() } })
  const log = createLogger({ level: 'info', node: 'a', format: 'pretty', colorize: false, destination: stream, env: {} })
  componentLogger(log, 'replication').warn({ peer: 'b' }, 'link down')
  log.debug('hidden')
  t.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: a\/replication: link down \{"peer":"b"\}\n$/)
})
