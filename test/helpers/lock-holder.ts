/**
 * Spawned by test/lock.test.ts: takes the volume lock with the factory named
 * in argv[2] ('native' | 'native-free') on argv[3], prints "locked <pid>" and
 * holds it until killed. Prints "error <code>" when the lock is refused.
 */
import { flockLocks } from '../../src/storage/flock-lock.js'
import { pidFileLocks } from '../../native-free/lock.js'

const [kind, volumePath] = process.argv.slice(2)
const factory = kind === 'native-free' ? pidFileLocks() : flockLocks()
try {
  factory.acquire(volumePath)
  process.stdout.write(`locked ${process.pid}\n`)
  setInterval(() => {}, 1 << 30)
} catch (err) {
  process.stdout.write(`error ${(err as { code?: string }).code ?? String(err)}\n`)
  process.exit(1)
}
