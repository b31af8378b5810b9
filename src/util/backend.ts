/**
 * The one switch between native addons and native-free/ implementations:
 * BLOCKREP_NATIVE_FREE=1 (or "true") selects native-free for bitmaps, the
 * volume lock and crc32c. Both read and write the same on-disk formats.
 */
export function nativeFree(): boolean {
  const v = process.env.BLOCKREP_NATIVE_FREE
  return v === '1' || v === 'true'
}
