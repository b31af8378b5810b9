import t from 'tap'
import { openEtcdStore, parseStoreUrl } from '../src/control/store-etcd-url.js'
import { EtcdStore } from '../src/control/store-etcd.js'
import { isCode } from '../src/util/errors.js'

t.test('etcd url - parses etcd URLs and file paths', async (t) => {
  t.same(parseStoreUrl('etcd://127.0.0.1:2379'), { kind: 'etcd', hosts: ['127.0.0.1:2379'], prefix: '/blockrep/' })
  t.same(parseStoreUrl('etcd://a:1,b.example:2,[::1]:2379'), { kind: 'etcd', hosts: ['a:1', 'b.example:2', '[::1]:2379'], prefix: '/blockrep/' })
  t.same(parseStoreUrl('etcd://a:1/prod/blockrep'), { kind: 'etcd', hosts: ['a:1'], prefix: '/prod/blockrep/' })
  t.same(parseStoreUrl('etcd://a:1/'), { kind: 'etcd', hosts: ['a:1'], prefix: '/blockrep/' })
  t.same(parseStoreUrl('/var/lib/blockrep/controller.json'), { kind: 'file', path: '/var/lib/blockrep/controller.json' })
  t.same(parseStoreUrl('state.json'), { kind: 'file', path: 'state.json' })
  t.same(parseStoreUrl('file:///x/y.json'), { kind: 'file', path: '/x/y.json' })
})

t.test('etcd url - bad store settings are ERR_CONFIG naming what is wrong', async (t) => {
  const cases: [string, RegExp][] = [
    ['', /expected a file path or etcd/],
    ['etcd://', /no etcd host/],
    ['etcd://host', /"host" is not HOST:PORT/],
    ['etcd://a:1,,b:2', /"" is not HOST:PORT/],
    ['etcd://a:70000', /port 70000 .* out of range/],
    ['etcd://a:0', /out of range/],
    ['http://a:1', /unknown scheme "http:\/\/"/],
    ['file://', /needs a path/],
  ]
  for (const [url, msg] of cases) {
    try {
      parseStoreUrl(url)
      t.fail(`${JSON.stringify(url)} was accepted`)
    } catch (err) {
      t.ok(isCode(err, 'ERR_CONFIG'), `${JSON.stringify(url)}: ERR_CONFIG`)
      t.match((err as Error).message, msg)
    }
  }
})

t.test('etcd url - openEtcdStore opens an etcd store for etcd:// and refuses anything else', async (t) => {
  const s = await openEtcdStore('etcd://127.0.0.1:2379,127.0.0.1:2380/x')
  t.ok(s instanceof EtcdStore)
  await s.close()
  await t.rejects(openEtcdStore('/tmp/x.json'), { code: 'ERR_CONFIG', message: /not an etcd:\/\/ URL/ })
  await t.rejects(openEtcdStore('etcd://nope'), { code: 'ERR_CONFIG' })
})
