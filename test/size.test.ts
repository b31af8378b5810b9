import t from 'tap'
import { formatBytes, formatRate, formatSizeExact, parseSize } from '../src/util/size.js'
import { BlockrepError, isCode } from '../src/util/errors.js'

function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}

t.test('size - parses plain bytes and binary units', async t => {
  const cases: [string | number, number][] = [
    ['0', 0], ['4096', 4096], [4096, 4096], ['512B', 512], ['512K', 512 * 1024], ['512k', 512 * 1024],
    ['64M', 64 * 2 ** 20], ['64MiB', 64 * 2 ** 20], ['64MB', 64 * 2 ** 20], ['4G', 4 * 2 ** 30],
    ['1T', 2 ** 40], [' 8 M ', 8 * 2 ** 20], ['1.5G', 1.5 * 2 ** 30], ['0.5K', 512],
  ]
  for (const [input, want] of cases) t.equal(parseSize(input), want, JSON.stringify(input))
})

t.test('size - rejects garbage with the field and value in the message', async t => {
  for (const bad of ['', 'abc', '12X', '-1', '1.5', '1.0001K', '64 M B', 'K', '1e3', '99999999P']) {
    const err = thrown(() => parseSize(bad, { field: 'tunables.journalSize' }))
    t.ok(isCode(err, 'ERR_CONFIG'), `${bad} throws ERR_CONFIG`)
    t.match((err as Error).message, `tunables.journalSize: `, bad)
    t.match((err as Error).message, JSON.stringify(bad), bad)
  }
  for (const bad of [-1, 1.5, Number.NaN, 2 ** 60]) t.throws(() => parseSize(bad), BlockrepError, String(bad))
})

t.test('size - ERR_USAGE for CLI flags', async t => {
  const err = thrown(() => parseSize('lots', { field: '--size', code: 'ERR_USAGE' }))
  t.ok(isCode(err, 'ERR_USAGE'))
  t.match((err as Error).message, /^--size: /)
})

t.test('size - formats for humans', async t => {
  t.equal(formatBytes(0), '0 B')
  t.equal(formatBytes(512), '512 B')
  t.equal(formatBytes(1023), '1023 B')
  t.equal(formatBytes(4096), '4.00 KiB')
  t.equal(formatBytes(1536 * 1024), '1.50 MiB')
  t.equal(formatBytes(64 * 2 ** 20), '64.0 MiB')
  t.equal(formatBytes(256 * 2 ** 20), '256 MiB')
  t.equal(formatBytes(2 ** 40), '1.00 TiB')
  t.equal(formatBytes(-2048), '-2.00 KiB')
  t.equal(formatRate(10 * 2 ** 20), '10.0 MiB/s')
})

t.test('size - formatSizeExact reads back through parseSize', async t => {
  for (const n of [0, 1, 4095, 4096, 64 * 2 ** 20, 256 * 2 ** 20, 3 * 2 ** 30, 2 ** 40 + 4096]) {
    t.equal(parseSize(formatSizeExact(n)), n, String(n))
  }
  t.equal(formatSizeExact(64 * 2 ** 20), '64M')
  t.equal(formatSizeExact(4097), '4097')
  t.throws(() => formatSizeExact(-1), RangeError)
})
