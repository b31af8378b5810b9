import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { BlockEngine } from '../../src/nbd/engine.js'
import { BlockrepError, ErrorCode } from '../../src/util/errors.js'

export interface FileEngineOptions {
  name?: string
  blockSize?: number
  readOnly?: boolean
}

const ZERO_CHUNK = 1024 * 1024

/**
 * A BlockEngine over a plain file with synchronous fs I/O: write() is
 * acknowledged once in the page cache, fua and flush() fdatasync. Enough to
 * exercise the NBD server with real clients; the real engine is the
 * replication primary.
 */
export class FileEngine implements BlockEngine {
  readonly size: number
  readonly blockSize: number
  readonly name: string
  readonly path: string
  private readonly fd: number
  private readOnly: boolean
  /** counters a test can assert on */
  flushes = 0
  fuaWrites = 0
  trims = 0

  constructor(file: string, opts: FileEngineOptions = {}) {
    this.path = file
    this.readOnly = opts.readOnly ?? false
    this.fd = fs.openSync(file, this.readOnly ? 'r' : 'r+')
    this.size = fs.fstatSync(this.fd).size
    this.blockSize = opts.blockSize ?? 4096
    this.name = opts.name ?? 'vol0'
  }

  isReadOnly(): boolean {
    return this.readOnly
  }

  /** Flip at run time, as a demoted primary would. */
  setReadOnly(on: boolean): void {
    this.readOnly = on
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length, ErrorCode.OUT_OF_RANGE)
    const buf = Buffer.alloc(length)
    let done = 0
    while (done < length) {
      const n = fs.readSync(this.fd, buf, done, length - done, offset + done)
      if (n === 0) throw new BlockrepError(ErrorCode.IO, 'short read', { context: { offset, length, done } })
      done += n
    }
    return buf
  }

  async write(offset: number, data: Buffer, opts: { fua: boolean }): Promise<void> {
    this.writable()
    this.check(offset, data.length, ErrorCode.NO_SPACE)
    let done = 0
    while (done < data.length) done += fs.writeSync(this.fd, data, done, data.length - done, offset + done)
    if (opts.fua) {
      this.fuaWrites++
      fs.fdatasyncSync(this.fd)
    }
  }

  async writeZeroes(offset: number, length: number, opts: { fua: boolean }): Promise<void> {
    this.writable()
    this.check(offset, length, ErrorCode.NO_SPACE)
    const zero = Buffer.alloc(Math.min(length, ZERO_CHUNK))
    for (let done = 0; done < length;) {
      done += fs.writeSync(this.fd, zero, 0, Math.min(zero.length, length - done), offset + done)
    }
    if (opts.fua) fs.fdatasyncSync(this.fd)
  }

  /** Advisory: counted, contents left alone (reading a trimmed range back is unspecified). */
  async trim(offset: number, length: number): Promise<void> {
    this.writable()
    this.check(offset, length, ErrorCode.OUT_OF_RANGE)
    this.trims++
  }

  async flush(): Promise<void> {
    this.flushes++
    fs.fdatasyncSync(this.fd)
  }

  close(): void {
    fs.closeSync(this.fd)
  }

  private writable(): void {
    if (this.readOnly) throw new BlockrepError(ErrorCode.READ_ONLY, 'volume is read-only')
  }

  private check(offset: number, length: number, code: ErrorCode): void {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new BlockrepError(code, 'range outside the volume', { context: { offset, length, size: this.size } })
    }
  }
}

/** A temp dir holding a zero-filled volume file of `size` bytes; `cleanup()` removes it. */
export function tempVolume(size: number, prefix = 'blockrep-nbd-'): { dir: string; file: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  const file = path.join(dir, 'volume.img')
  fs.writeFileSync(file, '')
  fs.truncateSync(file, size)
  return { dir, file, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) }
}
