import fs from 'node:fs'
import { createRequire } from 'node:module'
import type { LockFactory, VolumeLock } from './types.js'
import { BlockrepError } from '../util/errors.js'
import { EMPTY_LOCK_GRACE_MS, lockFilePath, lockHeld, lockIoError, parseHolder, pidAlive } from '../../native-free/lock.js'

type FlockSync = (fd: number, flags: 'exnb' | 'un') => void
// fs-ext is CommonJS with a native addon; loaded lazily so a missing build only fails when the native lock is chosen.
let flockImpl: FlockSync | null = null
function flockSync(): FlockSync {
  flockImpl ??= (createRequire(import.meta.url)('fs-ext') as { flockSync: FlockSync }).flockSync
  return flockImpl
}

/** True when the fs-ext addon loads (locks() falls back to the pid-file lock otherwise, like crc32c and bitmaps). */
export function flockAvailable(): boolean {
  try {
    flockSync()
    return true
  } catch {
    return false
  }
}

function readFd(fd: number): string {
  const buf = Buffer.alloc(64)
  const n = fs.readSync(fd, buf, 0, buf.length, 0)
  return buf.toString('utf8', 0, n)
}

class FlockLock implements VolumeLock {
  private fd: number
  constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd
  }

  release(): void {
    if (this.fd < 0) return
    const fd = this.fd
    this.fd = -1
    // Unlink while still holding the flock: an acquirer that opened the old
    // inode notices (inode check) and retries on the new file.
    try {
      const st = fs.fstatSync(fd)
      const cur = fs.statSync(lockFilePath(this.path))
      if (cur.ino === st.ino && cur.dev === st.dev) fs.unlinkSync(lockFilePath(this.path))
    } catch {
      // file already gone: nothing to remove
    }
    fs.closeSync(fd)
  }
}

/**
 * Native lock: flock(LOCK_EX|LOCK_NB) on `${path}.lock`, released by the
 * kernel when the process dies, then our pid (marked " flock") written into
 * the file. Interoperates with the native-free pid-file lock: after getting
 * the flock, a file that names a live pid without the flock mark belongs to a
 * native-free holder, so we refuse.
 */
export function acquireFlockLock(volumePath: string): VolumeLock {
  const lockPath = lockFilePath(volumePath)
  const { O_RDWR, O_CREAT, O_EXCL } = fs.constants
  for (let attempt = 0; attempt < 5; attempt++) {
    let fd: number
    let created = true
    try {
      fd = fs.openSync(lockPath, O_RDWR | O_CREAT | O_EXCL, 0o644)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw lockIoError(volumePath, err)
      created = false
      try {
        fd = fs.openSync(lockPath, O_RDWR)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue
        throw lockIoError(volumePath, e)
      }
    }
    try {
      try {
        flockSync()(fd, 'exnb')
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') throw lockHeld(volumePath, parseHolder(readFd(fd)).pid)
        throw lockIoError(volumePath, err)
      }
      const mine = fs.fstatSync(fd)
      let onPath: fs.Stats | null = null
      try {
        onPath = fs.statSync(lockPath)
      } catch {
        onPath = null
      }
      if (!onPath || onPath.ino !== mine.ino || onPath.dev !== mine.dev) {
        // we locked a file its holder unlinked on release; lock the new one instead
        fs.closeSync(fd)
        continue
      }
      if (!created) {
        const holder = parseHolder(readFd(fd))
        if (holder.pid !== null && !holder.flock && pidAlive(holder.pid)) throw lockHeld(volumePath, holder.pid)
        if (holder.pid === null && mine.size === 0 && Date.now() - mine.mtimeMs < EMPTY_LOCK_GRACE_MS) {
          // a native-free holder between its O_EXCL create and its pid write
          throw lockHeld(volumePath, null)
        }
      }
      fs.ftruncateSync(fd, 0)
      fs.writeSync(fd, `${process.pid} flock\n`, 0)
      return new FlockLock(volumePath, fd)
    } catch (err) {
      try {
        fs.closeSync(fd)
      } catch {
        // closing an fd we still own cannot fail in a way we could act on
      }
      throw err instanceof BlockrepError ? err : lockIoError(volumePath, err)
    }
  }
  throw lockHeld(volumePath, null)
}

/** The native lock factory (fs-ext flock). */
export function flockLocks(): LockFactory {
  return { kind: 'native', acquire: acquireFlockLock }
}
