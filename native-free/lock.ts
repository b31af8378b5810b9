import fs from 'node:fs'
import { BlockrepError } from '../src/util/errors.js'
import type { LockFactory, VolumeLock } from '../src/storage/types.js'

/**
 * Lock file format, shared with the native (flock) lock so both interoperate:
 * one line, `<pid>\n` from a native-free holder or `<pid> flock\n` from a
 * holder that also holds flock(2) on the file. A native acquirer that gets
 * the flock knows a "flock" holder is gone; a "<pid>" line it must check.
 */
export interface LockHolder {
  /** null when the file is empty or unreadable (a holder between create and write) */
  pid: number | null
  flock: boolean
}

/** A holder that has created the file but not yet written its pid gets this long before it counts as dead. */
export const EMPTY_LOCK_GRACE_MS = 10_000

export function lockFilePath(volumePath: string): string {
  return `${volumePath}.lock`
}

export function parseHolder(text: string): LockHolder {
  const m = /^(\d+)( flock)?\s*$/.exec(text)
  if (!m) return { pid: null, flock: false }
  return { pid: Number(m[1]), flock: m[2] !== undefined }
}

/** True when a process with this pid exists (EPERM: it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export function lockHeld(volumePath: string, holderPid: number | null): BlockrepError {
  const who = holderPid === null ? 'another process (pid not yet written)' : `pid ${holderPid}`
  return new BlockrepError('ERR_LOCK_HELD', `volume ${volumePath} is locked by ${who}`, {
    context: { path: volumePath, lockPath: lockFilePath(volumePath), holderPid },
  })
}

export function lockIoError(volumePath: string, cause: unknown): BlockrepError {
  const code = (cause as NodeJS.ErrnoException)?.code
  return new BlockrepError('ERR_IO', `cannot lock volume ${volumePath}: ${code ?? String(cause)}`, {
    cause,
    context: { path: volumePath, lockPath: lockFilePath(volumePath), errno: code },
  })
}

/** Reads the holder line and the file's identity; null when the file vanished meanwhile. */
function readLockFile(volumePath: string): { holder: LockHolder; ino: number; mtimeMs: number } | null {
  const lockPath = lockFilePath(volumePath)
  try {
    const st = fs.statSync(lockPath)
    const text = fs.readFileSync(lockPath, 'utf8')
    return { holder: parseHolder(text), ino: st.ino, mtimeMs: st.mtimeMs }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw lockIoError(volumePath, err)
  }
}

class PidFileLock implements VolumeLock {
  private held = true
  constructor(
    readonly path: string,
    private readonly lockPath: string,
  ) {}

  release(): void {
    if (!this.held) return
    this.held = false
    // Only remove a file that still names us: after a stale takeover by
    // someone else it is no longer ours to delete.
    const cur = readLockFile(this.path)
    if (cur && cur.holder.pid === process.pid && !cur.holder.flock) {
      try {
        fs.unlinkSync(this.lockPath)
      } catch {
        // already gone: nothing to release
      }
    }
  }
}

/**
 * Acquires the volume lock without any addon: the lock file is created with
 * O_CREAT|O_EXCL and holds our pid. A file naming a dead pid is stale (its
 * holder crashed) and is taken over. Residual limits, accepted for the
 * fallback: a recycled pid keeps a stale file looking alive, and two
 * processes taking over the same stale file at the same instant can race
 * (the re-check of pid and inode just before unlinking makes it narrow).
 */
export function acquirePidFileLock(volumePath: string): VolumeLock {
  const lockPath = lockFilePath(volumePath)
  for (let attempt = 0; attempt < 5; attempt++) {
    let fd: number
    try {
      fd = fs.openSync(lockPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw lockIoError(volumePath, err)
      const cur = readLockFile(volumePath)
      if (!cur) continue
      const { pid } = cur.holder
      if (pid !== null && pidAlive(pid)) throw lockHeld(volumePath, pid)
      if (pid === null && Date.now() - cur.mtimeMs < EMPTY_LOCK_GRACE_MS) throw lockHeld(volumePath, null)
      const again = readLockFile(volumePath)
      if (again && again.ino === cur.ino && again.holder.pid === pid) {
        try {
          fs.unlinkSync(lockPath)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw lockIoError(volumePath, e)
        }
      }
      continue
    }
    try {
      fs.writeSync(fd, `${process.pid}\n`)
    } catch (err) {
      fs.closeSync(fd)
      fs.rmSync(lockPath, { force: true })
      throw lockIoError(volumePath, err)
    }
    fs.closeSync(fd)
    return new PidFileLock(volumePath, lockPath)
  }
  const cur = readLockFile(volumePath)
  throw lockHeld(volumePath, cur?.holder.pid ?? null)
}

/** The native-free lock factory (pid file, O_EXCL). */
export function pidFileLocks(): LockFactory {
  return { kind: 'native-free', acquire: acquirePidFileLock }
}
