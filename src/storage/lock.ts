import type { LockFactory } from './types.js'
import { nativeFree } from '../util/backend.js'
import { flockAvailable, flockLocks } from './flock-lock.js'
import { pidFileLocks } from '../../native-free/lock.js'

/**
 * The volume lock factory: flock(2) through fs-ext, or the pid-file lock of
 * native-free/ when BLOCKREP_NATIVE_FREE=1 or the addon does not load. Both
 * use `${volume}.lock` and refuse each other's live holders.
 */
export function locks(): LockFactory {
  return nativeFree() || !flockAvailable() ? pidFileLocks() : flockLocks()
}
