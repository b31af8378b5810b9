import { Option } from 'commander'
import type { Command } from 'commander'
import { parseHostPort } from '../agent/config.js'
import { NbdClient } from '../client/nbd-client.js'
import { discardBacklog, exportRaw, exportRecords, findBacklog, listBacklog, readBacklogRecords } from '../replication/backlog.js'
import type { BacklogEntry } from '../replication/backlog.js'
import { BlockrepError } from '../util/errors.js'
import { formatBytes } from '../util/size.js'

interface DataFlag {
  data: string
}

/**
 * `blockrep backlog list|export|discard`: the writes a node accepted but never
 * shipped, rolled back when it rejoined (kept by `divergencePolicy: keep`).
 * Works on the files next to the data file; no agent needed.
 */
export function register(program: Command): void {
  const backlog = program
    .command('backlog')
    .description("a rejoined node's backlog: writes it accepted after the branch point, rolled back and kept (divergencePolicy keep)")

  backlog
    .command('list')
    .description('every kept backlog: seq range, block ranges, bytes, when')
    .requiredOption('--data <path>', "the node's data file (backlogs are kept next to it)")
    .option('--json', 'print as JSON')
    .action((flags: DataFlag & { json?: boolean }) => {
      const all = listBacklog(flags.data)
      if (flags.json === true) {
        process.stdout.write(`${JSON.stringify(all.map(describe), null, 2)}\n`)
        return
      }
      if (all.length === 0) {
        process.stdout.write(`no backlog next to ${flags.data}\n`)
        return
      }
      for (const e of all) process.stdout.write(renderEntry(e))
    })

  backlog
    .command('export <id>')
    .description('write a backlog out: a raw image delta (sparse, volume-sized), the record files, or onto an NBD export')
    .requiredOption('--data <path>', "the node's data file")
    .option('--out <path>', 'where to write (raw: the image file; records: <path>.json and <path>.bin)')
    .addOption(new Option('--format <format>', 'raw image delta or the record files').choices(['raw', 'records']).default('raw'))
    .option('--nbd <host:port>', 'apply the records, in seq order, to this NBD export instead (e.g. the new primary, once reviewed)')
    .option('--force', 'overwrite existing files')
    .action(async (id: string, flags: DataFlag & { out?: string; format: 'raw' | 'records'; nbd?: string; force?: boolean }) => {
      const e = findBacklog(flags.data, id)
      if ((flags.out === undefined) === (flags.nbd === undefined)) throw new BlockrepError('ERR_USAGE', 'give exactly one of --out <path> or --nbd <host:port>')
      if (flags.nbd !== undefined) {
        const { host, port } = parseHostPort(flags.nbd, '--nbd', { code: 'ERR_USAGE' })
        const records = readBacklogRecords(e)
        const c = await NbdClient.connect(host, port)
        try {
          for (const r of records) {
            if (r.data) await c.write(r.offset, r.data)
            else await c.writeZeroes(r.offset, r.length)
          }
          await c.flush()
        } finally {
          await c.close().catch(() => {})
        }
        process.stdout.write(`applied ${records.length} records (seq ${e.report.fromSeq}..${e.report.toSeq}) to ${flags.nbd}\n`)
        return
      }
      const out = flags.out!
      if (flags.format === 'raw') {
        const r = exportRaw(e, out, flags.force === true)
        process.stdout.write(`wrote ${r.records} records (${formatBytes(r.bytes)}) as a raw image delta to ${out}\n`)
      } else {
        const files = exportRecords(e, out, flags.force === true)
        process.stdout.write(`wrote ${files.join(' and ')}\n`)
      }
    })

  backlog
    .command('discard <id>')
    .description('delete a kept backlog (its writes are gone for good)')
    .requiredOption('--data <path>', "the node's data file")
    .option('--yes', 'confirm: the writes are deleted')
    .action((id: string, flags: DataFlag & { yes?: boolean }) => {
      const e = findBacklog(flags.data, id)
      if (flags.yes !== true) {
        throw new BlockrepError('ERR_USAGE', `discarding backlog ${id} deletes ${e.report.records ?? '?'} writes for good: add --yes to confirm (or export it first)`)
      }
      const gone = discardBacklog(e)
      process.stdout.write(`discarded backlog ${id}: deleted ${gone.join(', ')}\n`)
    })
}

function describe(e: BacklogEntry): Record<string, unknown> {
  const r = e.report
  return {
    id: e.id,
    node: r.node ?? null,
    fromSeq: r.fromSeq,
    toSeq: r.toSeq,
    branchSeq: r.branchSeq ?? null,
    records: r.records ?? null,
    bytes: r.bytes ?? null,
    ranges: r.ranges ?? null,
    blocks: r.blocks?.length ?? null,
    missingSeqs: r.missingSeqs ?? 0,
    at: r.at ?? null,
    json: e.json,
    bin: e.bin,
  }
}

function renderEntry(e: BacklogEntry): string {
  const r = e.report
  const ranges = (r.ranges ?? []).map(([a, b]) => (b - a === 1 ? `${a}` : `${a}-${b - 1}`))
  const shown = ranges.length > 12 ? `${ranges.slice(0, 12).join(', ')}, … (${ranges.length} ranges)` : ranges.join(', ')
  const lines = [
    `backlog ${e.id}${r.node ? ` of node ${r.node}` : ''}${typeof r.at === 'number' ? `, kept ${new Date(r.at).toISOString()}` : ''}`,
    `  seqs      ${r.fromSeq}..${r.toSeq} (branch at ${r.branchSeq ?? '?'}; ${r.records ?? '?'} records${r.missingSeqs ? `, ${r.missingSeqs} no longer in the journal` : ''})`,
    `  blocks    ${r.blocks?.length ?? '?'}${r.blockSize ? ` × ${formatBytes(r.blockSize)}` : ''}: ${shown || '-'}`,
    `  bytes     ${typeof r.bytes === 'number' ? formatBytes(r.bytes) : '?'}`,
    `  files     ${e.json}${e.bin ? `, ${e.bin}` : ''}`,
    '',
  ]
  return `${lines.join('\n')}\n`
}
