import { createRequire } from 'node:module'
import { crc32cJs } from '../../native-free/crc32c.js'
import { nativeFree } from './backend.js'

type Crc = (buf: Uint8Array, initial?: number) => number

function load(): Crc {
  if (nativeFree()) return crc32cJs
  try {
    const mod = createRequire(import.meta.url)('@node-rs/crc32') as { crc32c: (b: Buffer, init?: number) => number }
    return (buf, initial = 0) => mod.crc32c(Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength), initial) >>> 0
  } catch {
    return crc32cJs
  }
}

/** crc32c (Castagnoli) of `buf`, continuing from `initial`. Hardware-accelerated unless native-free is selected. */
export const crc32c: Crc = load()
