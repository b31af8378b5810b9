import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseConfig, redactConfig } from '../src/agent/config.js'
import { BlockrepError } from '../src/util/errors.js'
import { makeCa, makeCert } from './helpers/certs.js'

const SECRET = 'correct horse battery staple'
const dir = mkdtempSync(join(tmpdir(), 'blockrep-config-tls-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const ca = makeCa(dir, 'ca')
const leaf = makeCert(dir, ca, 'a')

function issues(fn: () => unknown): { path: string; message: string }[] {
  try {
    fn()
  } catch (err) {
    if (err instanceof BlockrepError) return err.context.issues as { path: string; message: string }[]
    throw err
  }
  throw new Error('expected ERR_CONFIG')
}

t.test('config tls - files relative to the config directory are read; require and verifyHostname default to true', async t => {
  const cfg = parseConfig({ node: 'a', data: 'v.img', secret: SECRET, tls: { cert: 'a.crt', key: 'a.key', ca: 'ca.crt' } }, dir)
  t.ok(cfg.tls)
  t.equal(cfg.tls?.certFile, join(dir, 'a.crt'))
  t.equal(cfg.tls?.require, true)
  t.equal(cfg.tls?.verifyHostname, true)
  t.match(cfg.tls?.cert.toString(), /BEGIN CERTIFICATE/)
  const noTls = parseConfig({ node: 'a', data: 'v.img', secret: SECRET }, dir)
  t.equal(noTls.tls, null, 'no tls section: plain TCP')
  const opt = parseConfig({ node: 'a', data: 'v.img', secret: SECRET, tls: { cert: leaf.cert, key: leaf.key, ca: ca.cert, require: false, verifyHostname: false } }, dir)
  t.equal(opt.tls?.require, false)
  t.equal(opt.tls?.verifyHostname, false)
})

t.test('config tls - redactConfig shows file names, never the key', async t => {
  const cfg = parseConfig({ node: 'a', data: 'v.img', secret: SECRET, adminToken: 'tok-tok-tok-tok', tls: { cert: 'a.crt', key: 'a.key', ca: 'ca.crt' } }, dir)
  const text = JSON.stringify(redactConfig(cfg))
  t.notMatch(text, /PRIVATE KEY|BEGIN CERTIFICATE/)
  t.notMatch(text, SECRET)
  t.match(text, /a\.key/)
})

t.test('config tls - every problem is named with its field', async t => {
  writeFileSync(join(dir, 'empty.pem'), '')
  const got = issues(() => parseConfig({ node: 'a', data: 'v.img', secret: SECRET, tls: { cert: 'missing.crt', key: 'a.crt', ca: 'empty.pem', require: 'yes', verify: true } }, dir))
  const byPath = Object.fromEntries(got.map(i => [i.path, i.message]))
  t.match(byPath['tls.cert'], /cannot read .*missing\.crt: ENOENT/)
  t.match(byPath['tls.key'], /does not hold a private key/)
  t.notMatch(byPath['tls.key'], /BEGIN/, 'the file is never quoted')
  t.match(byPath['tls.ca'], /does not hold a CA certificate/)
  t.match(byPath['tls.require'], /expected true or false/)
  t.match(byPath['tls.verify'], /unknown field \(did you mean "verifyHostname"\?\)|unknown field/)
  const missing = issues(() => parseConfig({ node: 'a', data: 'v.img', secret: SECRET, tls: { cert: 'a.crt' } }, dir))
  t.same(missing.map(i => i.path).sort(), ['tls.ca', 'tls.key'])
  const notObject = issues(() => parseConfig({ node: 'a', data: 'v.img', secret: SECRET, tls: true }, dir))
  t.equal(notObject[0]?.path, 'tls')
})
