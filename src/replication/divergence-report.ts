import { writeFileSync } from 'node:fs'
import type { NodeStore } from './node-store.js'
import type { Logger } from '../util/log.js'

export interface DivergenceReport {
  node: string
  branchSeq: number
  fromSeq: number
  toSeq: number
  records: number
  blocks: number[]
  policy: 'keep' | 'discard'
  /** where the diverged records were kept (policy keep) */
  keptIn: string | null
}

/**
 * A standby whose head left the primary's history is about to be rolled back
 * to the branch point. Its writes after the branch are reported (block list,
 * seq range) and, with policy `keep`, saved next to the data file for the
 * operator — never silently dropped or silently applied.
 */
export function reportDivergence(store: NodeStore, branchSeq: number, policy: 'keep' | 'discard', log: Logger): DivergenceReport {
  const j = store.journal
  const head = j.headSeq
  const from = Math.max(branchSeq + 1, j.tailSeq)
  const bs = store.meta.blockSize
  const blocks = new Set<number>()
  const parts: Buffer[] = []
  let records = 0
  if (from <= head) {
    for (const rec of j.read(from, head)) {
      records++
      for (let b = Math.floor(rec.offset / bs); b < Math.ceil((rec.offset + rec.length) / bs); b++) blocks.add(b)
      if (policy === 'keep') {
        const h = Buffer.from(JSON.stringify({ seq: rec.seq, epoch: rec.epoch, offset: rec.offset, length: rec.length, zero: rec.data === null }) + '\n')
        const len = Buffer.alloc(4)
        len.writeUInt32BE(h.length)
        parts.push(len, h)
        if (rec.data) parts.push(rec.data)
      }
    }
  }
  let keptIn: string | null = null
  if (policy === 'keep' && records > 0) {
    keptIn = `${store.paths.data}.diverged-${branchSeq + 1}-${head}.bin`
    writeFileSync(keptIn, Buffer.concat(parts))
  }
  const report: DivergenceReport = {
    node: store.meta.nodeId,
    branchSeq,
    fromSeq: branchSeq + 1,
    toSeq: head,
    records,
    blocks: [...blocks].sort((a, b) => a - b),
    policy,
    keptIn,
  }
  if (policy === 'keep') writeFileSync(`${store.paths.data}.diverged-${branchSeq + 1}-${head}.json`, JSON.stringify(report, null, 2))
  log.warn({ divergence: { ...report, blocks: report.blocks.slice(0, 64) }, blocksTotal: report.blocks.length }, 'diverged writes after the branch point will be rolled back to the primary\'s content')
  return report
}
