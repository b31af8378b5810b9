import type { ResyncProgressSink } from './resync-sender.js'
import type { ResyncProgress } from './status-types.js'

/** What `status` shows of a resync in progress. */
export type ResyncProgressView = ResyncProgress

/**
 * Progress of one resync: blocks and bytes done in the current round, a rate
 * smoothed over the last few seconds, and an ETA for the round. `totals`
 * accumulate over rounds for the report.
 */
export class ResyncMeter implements ResyncProgressSink {
  private cur: ResyncProgressView | null = null
  private samples: { t: number; bytes: number }[] = []
  totals = { rounds: 0, blocks: 0, bytes: 0, startedAt: 0, finishedAt: 0 }

  begin(round: number, mode: 'BITMAP' | 'FULL', blocksTotal: number, frozenSeq?: number): void {
    const now = Date.now()
    if (round === 1) {
      this.totals = { rounds: 0, blocks: 0, bytes: 0, startedAt: now, finishedAt: 0 }
      this.samples = []
    }
    this.totals.rounds = round
    this.cur = { mode, round, blocksTotal, blocksDone: 0, bytesDone: 0, startedAt: now, rateBytesPerSec: 0, etaSeconds: null }
    if (frozenSeq !== undefined) this.cur.frozenSeq = frozenSeq
  }

  blocksDone(blocks: number, bytes: number): void {
    const c = this.cur
    if (!c) return
    c.blocksDone += blocks
    c.bytesDone += bytes
    this.totals.blocks += blocks
    this.totals.bytes += bytes
    const now = Date.now()
    const last = this.samples[this.samples.length - 1]
    if (!last || now - last.t >= 250) {
      this.samples.push({ t: now, bytes: this.totals.bytes })
      if (this.samples.length > 20) this.samples.shift()
    }
  }

  /** The resync finished (the standby is consistent). */
  finish(): void {
    if (this.cur) this.totals.finishedAt = Date.now()
    this.cur = null
  }

  /** The connection dropped mid-resync. */
  stop(): void {
    this.cur = null
  }

  view(): ResyncProgressView | null {
    const c = this.cur
    if (!c) return null
    const first = this.samples[0]
    const now = Date.now()
    let rate = 0
    if (first && now - first.t > 0) rate = ((this.totals.bytes - first.bytes) * 1000) / (now - first.t)
    const bytesPerBlock = c.blocksDone > 0 ? c.bytesDone / c.blocksDone : 0
    const left = (c.blocksTotal - c.blocksDone) * bytesPerBlock
    return { ...c, rateBytesPerSec: Math.round(rate), etaSeconds: rate > 0 && bytesPerBlock > 0 ? Math.round((left / rate) * 10) / 10 : null }
  }
}
