/**
 * crc32c (Castagnoli, reflected polynomial 0x82F63B78) in plain TypeScript,
 * slicing-by-8. Same results as the hardware path in src/util/crc32c.ts.
 */
const POLY = 0x82f63b78
const TABLES: Uint32Array[] = (() => {
  const t: Uint32Array[] = []
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256))
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let j = 0; j < 8; j++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1
    t[0][i] = c >>> 0
  }
  for (let i = 0; i < 256; i++) {
    for (let k = 1; k < 8; k++) t[k][i] = (t[k - 1][i] >>> 8) ^ t[0][t[k - 1][i] & 0xff]
  }
  return t
})()

/** crc32c of `buf`, continuing from `initial` (the crc of the bytes before). */
export function crc32cJs(buf: Uint8Array, initial = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES
  let crc = ~initial >>> 0
  let i = 0
  const n = buf.length
  for (; i + 8 <= n; i += 8) {
    const a = (crc ^ (buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24))) >>> 0
    crc =
      t7[a & 0xff] ^ t6[(a >>> 8) & 0xff] ^ t5[(a >>> 16) & 0xff] ^ t4[a >>> 24] ^
      t3[buf[i + 4]] ^ t2[buf[i + 5]] ^ t1[buf[i + 6]] ^ t0[buf[i + 7]]
  }
  for (; i < n; i++) crc = (crc >>> 8) ^ t0[(crc ^ buf[i]) & 0xff]
  return ~crc >>> 0
}
