import { Cmd, CmdFlag, TransFlag } from '../nbd/constants.js'
import { splitHostPort } from './address.js'
import { NbdClient } from './nbd-client.js'
import type { ProxyOp, UpstreamReply } from './proxy-ops.js'
import type { QueuePath } from './request-queue.js'

/** The primary a configuration document names. */
export interface UpstreamTarget {
  node: string
  /** HOST:PORT of its NBD export */
  nbd: string
  epoch: number
}

export interface OpenUpstreamOptions {
  /** connect + handshake bound */
  timeoutMs: number
  /** export name to ask for; the agents serve the volume under "" */
  exportName?: string
}

/**
 * One NBD connection to the primary of one epoch: the path the request
 * queue sends on. It forwards requests as they are, whatever the errno of
 * the reply; a lost connection rejects every unanswered request.
 */
export class UpstreamPath implements QueuePath {
  readonly epoch: number
  readonly label: string

  private constructor(
    private readonly client: NbdClient,
    readonly target: UpstreamTarget,
  ) {
    this.epoch = target.epoch
    this.label = `${target.node}@${target.nbd}`
  }

  static async open(target: UpstreamTarget, opts: OpenUpstreamOptions): Promise<UpstreamPath> {
    const [host, port] = splitHostPort(target.nbd, 'primary.nbd')
    const client = await NbdClient.connect(host, port, opts.exportName ?? '', { timeoutMs: opts.timeoutMs })
    return new UpstreamPath(client, target)
  }

  get size(): number {
    return this.client.size
  }

  get readOnly(): boolean {
    return (this.client.flags & TransFlag.READ_ONLY) !== 0
  }

  get closed(): boolean {
    return this.client.closed
  }

  onClose(fn: (err: Error) => void): void {
    this.client.onClose(fn)
  }

  close(): void {
    this.client.destroy()
  }

  send(op: ProxyOp): Promise<UpstreamReply> {
    switch (op.kind) {
      case 'read':
        return this.client.command(Cmd.READ, 0, op.offset, op.length)
      case 'write':
        return this.client.command(Cmd.WRITE, op.fua ? CmdFlag.FUA : 0, op.offset, op.data.length, op.data)
      case 'writeZeroes':
        return this.client.command(Cmd.WRITE_ZEROES, op.fua ? CmdFlag.FUA : 0, op.offset, op.length)
      case 'trim':
        return this.client.command(Cmd.TRIM, 0, op.offset, op.length)
      case 'flush':
        return this.client.command(Cmd.FLUSH, 0, 0, 0)
    }
  }
}
