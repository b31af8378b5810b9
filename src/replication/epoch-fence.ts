import { BlockrepError } from '../util/errors.js'
import type { Logger } from '../util/log.js'

/** Why and since when a primary is fenced. */
export interface Fence {
  /** the newer epoch that fenced it */
  epoch: number
  reason: string
  /** ms epoch (wall clock) */
  at: number
}

/**
 * Invariant 6's epoch half: a node remembers the newest epoch it has heard of
 * (from a peer's META or FAILSAFE_OK, or a controller call); a primary that
 * hears of one above its own stops accepting writes at once and stays fenced
 * until it is demoted. Persisting is the owner's job (`onNewerEpoch`).
 */
export class EpochFence {
  /** the newest epoch heard of above the node's own (0: none) */
  newestSeen = 0
  fenced: Fence | null = null
  /** called when a newer epoch than any heard of before is learned */
  onNewerEpoch: ((epoch: number, reason: string) => void) | null = null

  constructor(private readonly log: Logger) {}

  /** The newest epoch the node knows of, given its own. */
  known(own: number): number {
    return Math.max(own, this.newestSeen)
  }

  /** Records that `epoch` exists; true when the node is fenced (now or already). */
  note(epoch: number, reason: string, own: number, isPrimary: boolean): boolean {
    if (epoch <= own) return false
    const fresh = epoch > this.newestSeen
    this.newestSeen = Math.max(this.newestSeen, epoch)
    if (isPrimary && (this.fenced === null || epoch > this.fenced.epoch)) {
      this.fenced = { epoch, reason, at: Date.now() }
      this.log.error({ epoch, own, reason }, 'fenced: a newer epoch exists, this primary accepts no more writes')
    }
    if (fresh) this.onNewerEpoch?.(epoch, reason)
    return this.fenced !== null
  }

  /** The refusal a fenced node gives (call only while fenced). */
  error(nodeId: string, own: number): BlockrepError {
    const f = this.fenced!
    return new BlockrepError('ERR_FENCED', `${nodeId} is fenced: ${f.reason}; it must be demoted and rejoin as a standby`, { context: { epoch: f.epoch, own } })
  }
}
