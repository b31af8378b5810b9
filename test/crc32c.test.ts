import t from 'tap'
import { randomBytes } from 'node:crypto'
import { crc32c } from '../src/util/crc32c.js'
import { crc32cJs } from '../native-free/crc32c.js'

t.test('crc32c - check value of "123456789" is 0xE3069283', async t => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283)
  t.equal(crc32cJs(Buffer.from('123456789')), 0xe3069283)
})

t.test('crc32c - native and native-free agree, also when continued', async t => {
  for (const n of [0, 1, 7, 8, 9, 4096, 65537]) {
    const b = randomBytes(n)
    t.equal(crc32cJs(b), crc32c(b), `length ${n}`)
    const cut = n >> 1
    t.equal(crc32cJs(b.subarray(cut), crc32cJs(b.subarray(0, cut))), crc32c(b), `continued ${n}`)
  }
})
