import t from 'tap'
import { BlockrepError, isCode } from '../src/util/errors.js'
t.test('errors - code and context survive', async t => {
  const e = new BlockrepError('ERR_IO', 'boom', { context: { path: '/x' } })
  t.ok(isCode(e, 'ERR_IO'))
  t.equal(e.context.path, '/x')
})
