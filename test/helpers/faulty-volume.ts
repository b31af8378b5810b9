import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'

/**
 * Fault injection at the file-system call for one file (a volume's data file,
 * a journal, …): the storage code under test keeps its real I/O path and its
 * own errno mapping, and only the calls on that file's descriptors misbehave
 * on demand. Works by wrapping `fs.writeSync`, `fs.writevSync`,
 * `fs.fdatasyncSync` and `fs.fdatasync` (the calls the storage layer makes)
 * until `restore()`.
 *
 * - `failWrites(n, code)`: the next n writes fail with that errno, writing nothing
 * - `tearNextWrite(keep)`: the next write stores only its first `keep` bytes, then fails with EIO
 * - `failSyncs(n, code)`: the next n fdatasyncs fail
 * - `fullAfter(bytes)`: every write that would take the file's written bytes past
 *   `bytes` (counting from now) fails with ENOSPC, as a disk filling up would
 */
export class FaultyFile {
  writes = 0
  faultsInjected = 0
  private failN = 0
  private failCode = 'ENOSPC'
  private tearKeep: number | null = null
  private syncFailN = 0
  private syncFailCode = 'EIO'
  private budget: number | null = null
  private readonly ino: number
  private readonly dev: number
  private readonly orig = { writeSync: fs.writeSync, writevSync: fs.writevSync, fdatasyncSync: fs.fdatasyncSync, fdatasync: fs.fdatasync }

  constructor(readonly path: string) {
    const st = fs.statSync(path)
    this.ino = st.ino
    this.dev = st.dev
    const self = this
    const o = this.orig
    fs.writeSync = function (fd: number, buffer: unknown, ...rest: unknown[]): number {
      if (!self.matches(fd)) return (o.writeSync as (...a: unknown[]) => number)(fd, buffer, ...rest)
      self.writes++
      const view = buffer as Uint8Array
      const off = typeof rest[0] === 'number' ? rest[0] : 0
      const len = typeof rest[1] === 'number' ? rest[1] : view.length - off
      if (self.failN > 0) {
        self.failN--
        throw self.fault(self.failCode, 'write')
      }
      if (self.budget !== null) {
        if (len > self.budget) throw self.fault('ENOSPC', 'write')
        self.budget -= len
      }
      if (self.tearKeep !== null) {
        const keep = Math.min(self.tearKeep, len)
        self.tearKeep = null
        if (keep > 0) (o.writeSync as (...a: unknown[]) => number)(fd, buffer, off, keep, rest[2])
        throw self.fault('EIO', 'write')
      }
      return (o.writeSync as (...a: unknown[]) => number)(fd, buffer, ...rest)
    } as typeof fs.writeSync
    fs.writevSync = function (fd: number, iov: readonly NodeJS.ArrayBufferView[], position?: number | null): number {
      if (!self.matches(fd)) return o.writevSync(fd, iov, position ?? undefined)
      self.writes++
      const all = Buffer.concat(iov.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)))
      if (self.failN > 0) {
        self.failN--
        throw self.fault(self.failCode, 'writev')
      }
      if (self.budget !== null) {
        if (all.length > self.budget) throw self.fault('ENOSPC', 'writev')
        self.budget -= all.length
      }
      if (self.tearKeep !== null) {
        const keep = Math.min(self.tearKeep, all.length)
        self.tearKeep = null
        if (keep > 0) o.writeSync(fd, all, 0, keep, position ?? null)
        throw self.fault('EIO', 'writev')
      }
      return o.writevSync(fd, iov, position ?? undefined)
    } as typeof fs.writevSync
    fs.fdatasyncSync = function (fd: number): void {
      if (self.matches(fd) && self.syncFailN > 0) {
        self.syncFailN--
        throw self.fault(self.syncFailCode, 'fdatasync')
      }
      o.fdatasyncSync(fd)
    }
    fs.fdatasync = function (fd: number, cb: fs.NoParamCallback): void {
      if (self.matches(fd) && self.syncFailN > 0) {
        self.syncFailN--
        const err = self.fault(self.syncFailCode, 'fdatasync')
        process.nextTick(() => cb(err))
        return
      }
      o.fdatasync(fd, cb)
    } as typeof fs.fdatasync
    // named imports of node:fs see the wrappers too
    syncBuiltinESMExports()
  }

  failWrites(n: number, code = 'ENOSPC'): this {
    this.failN = n
    this.failCode = code
    return this
  }

  tearNextWrite(keep: number): this {
    this.tearKeep = keep
    return this
  }

  failSyncs(n: number, code = 'EIO'): this {
    this.syncFailN = n
    this.syncFailCode = code
    return this
  }

  fullAfter(bytes: number | null): this {
    this.budget = bytes
    return this
  }

  /** Puts the real fs calls back. */
  restore(): void {
    fs.writeSync = this.orig.writeSync
    fs.writevSync = this.orig.writevSync
    fs.fdatasyncSync = this.orig.fdatasyncSync
    fs.fdatasync = this.orig.fdatasync
    syncBuiltinESMExports()
  }

  /** Whether `fd` is open on the target file (checked every call: descriptors are reused after close). */
  private matches(fd: number): boolean {
    try {
      const st = fs.fstatSync(fd)
      return st.ino === this.ino && st.dev === this.dev
    } catch {
      return false
    }
  }

  private fault(code: string, syscall: string): NodeJS.ErrnoException {
    this.faultsInjected++
    const errno = { ENOSPC: -28, EIO: -5, EDQUOT: -122 }[code] ?? -5
    return Object.assign(new Error(`${code}: injected fault, ${syscall} '${this.path}'`), { code, errno, syscall, path: this.path })
  }
}
