/**
 * BitmapFactory selection: CRoaring through the `roaring` addon, or the
 * pure TypeScript Roaring in native-free/ when BLOCKREP_NATIVE_FREE=1. Both
 * read and write the portable Roaring format, so either reads the other's
 * persisted bitmaps.
 */
import { NativeFreeBitmap } from '../../native-free/bitmap.js'
import { nativeFree } from '../util/backend.js'
import { NativeBitmap, roaringAddon } from './roaring-bitmap.js'
import type { BitmapFactory } from './types.js'

export const nativeBitmaps: BitmapFactory = {
  kind: 'native',
  create: blocks => NativeBitmap.from(blocks),
  deserialize: buf => NativeBitmap.deserialize(buf),
}

export const nativeFreeBitmaps: BitmapFactory = {
  kind: 'native-free',
  create: blocks => NativeFreeBitmap.from(blocks),
  deserialize: buf => NativeFreeBitmap.deserialize(buf),
}

/**
 * The factory BLOCKREP_NATIVE_FREE selects (read at each call). Like
 * crc32c, falls back to native-free when the addon cannot be loaded: the
 * on-disk format is the same, only speed differs.
 */
export function bitmaps(): BitmapFactory {
  return nativeFree() || roaringAddon() === null ? nativeFreeBitmaps : nativeBitmaps
}
