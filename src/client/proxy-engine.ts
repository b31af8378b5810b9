import type { BlockEngine } from '../nbd/engine.js'
import type { RequestQueue } from './request-queue.js'

/**
 * The BlockEngine the proxy's NBD server serves: every call becomes a
 * request in the queue, answered by whichever primary the queue reaches.
 * The NBD session above keeps its usual ordering (overlapping mutations of a
 * connection one after another, FLUSH after every earlier mutation).
 */
export class ProxyEngine implements BlockEngine {
  constructor(
    readonly name: string,
    readonly size: number,
    readonly blockSize: number,
    private readonly queue: RequestQueue,
  ) {}

  /** The proxy always offers a writable export; a write reaching a node that refuses it waits for a primary. */
  isReadOnly(): boolean {
    return false
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return (await this.queue.submit({ kind: 'read', offset, length })) as Buffer
  }

  async write(offset: number, data: Buffer, opts: { fua: boolean }): Promise<void> {
    await this.queue.submit({ kind: 'write', offset, data, fua: opts.fua })
  }

  async writeZeroes(offset: number, length: number, opts: { fua: boolean }): Promise<void> {
    await this.queue.submit({ kind: 'writeZeroes', offset, length, fua: opts.fua })
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.queue.submit({ kind: 'trim', offset, length })
  }

  async flush(): Promise<void> {
    await this.queue.submit({ kind: 'flush' })
  }
}
