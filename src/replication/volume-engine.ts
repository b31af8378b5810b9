import type { BlockEngine } from '../nbd/engine.js'
import type { ReplicationNode } from './replication-node.js'
import { BlockrepError } from '../util/errors.js'

/**
 * The NBD export's view of a node: reads from the local volume, writes through
 * the primary's replicated write path. A standby (or a demoted primary) is
 * read-only: writes get EPERM through the errno mapping.
 */
export class VolumeEngine implements BlockEngine {
  constructor(
    private readonly node: ReplicationNode,
    readonly name: string,
  ) {}

  get size(): number {
    return this.node.store.meta.size
  }

  get blockSize(): number {
    return this.node.store.meta.blockSize
  }

  isReadOnly(): boolean {
    return this.node.writePath === null
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new BlockrepError('ERR_OUT_OF_RANGE', `read of ${length} bytes at ${offset} passes the end of the ${this.size}-byte volume`, { context: { offset, length } })
    }
    return this.node.store.volume.read(offset, length)
  }

  async write(offset: number, data: Buffer, _opts: { fua: boolean }): Promise<void> {
    await this.wp().write(offset, data.length, data)
  }

  async writeZeroes(offset: number, length: number, _opts: { fua: boolean }): Promise<void> {
    await this.wp().write(offset, length, null)
  }

  async trim(offset: number, length: number): Promise<void> {
    // trimmed ranges read back as zeroes: replicated like WRITE_ZEROES
    await this.wp().write(offset, length, null)
  }

  async flush(): Promise<void> {
    if (this.node.writePath) await this.node.writePath.flush()
    else await this.node.store.journal.sync()
  }

  private wp() {
    const wp = this.node.writePath
    if (!wp) throw new BlockrepError('ERR_READ_ONLY', `${this.node.store.meta.nodeId} is a standby: writes go to the primary`)
    return wp
  }
}
