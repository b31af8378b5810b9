import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs'
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
  /** ms epoch when the report was made (the rejoin) */
  at: number
  /** payload bytes of the records (zeroed ranges count their length) */
  bytes: number
  /** the blocks as ascending [first, end) ranges */
  ranges: [number, number][]
  blockSize: number
  volumeSize: number
  /** seqs after the branch point the journal no longer held (their blocks are in no report) */
  missingSeqs: number
}

/** Ascending block numbers → [first, end) ranges. */
export function blockRanges(sorted: readonly number[]): [number, number][] {
  const out: [number, number][] = []
  for (const b of sorted) {
    const last = out[out.length - 1]
    if (last && last[1] === b) last[1] = b + 1
    else out.push([b, b + 1])
  }
  return out
}

/** Writes a file and fsyncs it: the report must survive the rollback that follows. */
function writeDurable(path: string, data: Buffer | string): void {
  const fd = openSync(path, 'w', 0o600)
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
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
  let bytes = 0
  if (from <= head) {
    for (const rec of j.read(from, head)) {
      records++
      bytes += rec.length
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
    writeDurable(keptIn, Buffer.concat(parts))
  }
  const sorted = [...blocks].sort((a, b) => a - b)
  const report: DivergenceReport = {
    node: store.meta.nodeId,
    branchSeq,
    fromSeq: branchSeq + 1,
    toSeq: head,
    records,
    blocks: sorted,
    policy,
    keptIn,
    at: Date.now(),
    bytes,
    ranges: blockRanges(sorted),
    blockSize: bs,
    volumeSize: store.meta.size,
    missingSeqs: Math.max(0, from - (branchSeq + 1)),
  }
  if (policy === 'keep') writeDurable(`${store.paths.data}.diverged-${branchSeq + 1}-${head}.json`, JSON.stringify(report, null, 2))
  log.warn({ divergence: { ...report, blocks: report.blocks.slice(0, 64), ranges: report.ranges.slice(0, 64) }, blocksTotal: report.blocks.length }, 'diverged writes after the branch point will be rolled back to the primary\'s content')
  return report
}
