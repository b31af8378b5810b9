import { randomUUID } from 'node:crypto'
import { existsSync, statSync } from 'node:fs'
import { Option } from 'commander'
import type { Command } from 'commander'
import { NodeStore, defaultPaths } from '../replication/node-store.js'
import type { NodeMeta } from '../storage/types.js'
import { parseSize, formatBytes } from '../util/size.js'
import { BlockrepError } from '../util/errors.js'

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

interface InitFlags {
  data: string
  size: string
  node: string
  meta?: string
  journal?: string
  blockSize: string
  journalSize: string
  volumeId?: string
  role: 'primary' | 'standby'
}

/** `blockrep init`: creates or validates a volume's data file, metadata and journal. */
export function register(program: Command): void {
  program
    .command('init')
    .description('create (or validate) a volume: data file, metadata and journal')
    .requiredOption('--data <path>', 'data file or block device')
    .requiredOption('--size <size>', 'volume size: bytes or 512K, 64M, 4G, 1T')
    .requiredOption('--node <id>', "this node's id")
    .option('--meta <path>', 'metadata file (default: <data>.meta)')
    .option('--journal <path>', 'journal file (default: <data>.journal)')
    .option('--block-size <bytes>', 'block size', '4096')
    .option('--journal-size <size>', 'journal ring size', '256M')
    .option('--volume-id <uuid>', 'volume id (primary default: a new UUID; a standby without one adopts the primary\'s at its first FULL sync)')
    .addOption(new Option('--role <role>', 'initial role').choices(['primary', 'standby']).default('standby'))
    .action((flags: InitFlags, cmd: Command) => {
      const size = parseSize(flags.size, { field: '--size', code: 'ERR_USAGE' })
      const blockSize = parseSize(flags.blockSize, { field: '--block-size', code: 'ERR_USAGE' })
      const journalSize = parseSize(flags.journalSize, { field: '--journal-size', code: 'ERR_USAGE' })
      if (blockSize < 512 || blockSize > 1024 * 1024 || (blockSize & (blockSize - 1)) !== 0) {
        throw new BlockrepError('ERR_USAGE', `--block-size must be a power of two between 512 and 1M, got ${blockSize}`, { context: { field: '--block-size' } })
      }
      if (size === 0 || size % blockSize !== 0) {
        throw new BlockrepError('ERR_USAGE', `--size ${size} must be a positive multiple of the ${blockSize}-byte block size`, { context: { field: '--size' } })
      }
      if (journalSize < 1024 * 1024) {
        throw new BlockrepError('ERR_USAGE', `--journal-size must be at least 1M, got ${journalSize}`, { context: { field: '--journal-size' } })
      }
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(flags.node)) {
        throw new BlockrepError('ERR_USAGE', `--node "${flags.node}" must be 1-64 letters, digits, '.', '_' or '-'`, { context: { field: '--node' } })
      }
      if (flags.volumeId !== undefined && !UUID_RE.test(flags.volumeId)) {
        throw new BlockrepError('ERR_USAGE', `--volume-id "${flags.volumeId}" is not a UUID`, { context: { field: '--volume-id' } })
      }
      const paths = defaultPaths(flags.data, flags.meta, flags.journal)
      const existed = existsSync(paths.meta)
      // a new primary gets a fresh id; re-running init on an existing volume validates it instead
      const volumeId = flags.volumeId ?? (flags.role === 'primary' && !existed ? randomUUID() : '')
      const warnings: string[] = []
      const meta = NodeStore.init({ ...paths, nodeId: flags.node, size, blockSize, journalSize, role: flags.role, volumeId }, warnings)
      for (const w of warnings) process.stderr.write(`blockrep: warning: ${w}\n`)
      const out = cmd.parent?.configureOutput().writeOut ?? ((s: string) => process.stdout.write(s))
      const given = (name: string): boolean => cmd.getOptionValueSource(name) === 'cli'
      if (existed) {
        out(`already initialised: ${paths.meta} exists and matches --size, --block-size and --node; nothing was created or changed\n`)
        for (const n of unchanged(meta, flags, journalSize, paths.journal, given)) out(`  not changed: ${n}\n`)
      }
      out(
        `volume ${meta.volumeId || '(adopted at first sync)'}: ${formatBytes(meta.size)} in ${meta.blockSize}-byte blocks, node ${meta.nodeId}, role ${meta.role}\n` +
          `  data ${paths.data}\n  meta ${paths.meta}\n  journal ${paths.journal}\n`,
      )
    })
}

/** What a re-run of init on an existing volume was asked to set but left as it was. */
function unchanged(meta: NodeMeta, flags: InitFlags, journalSize: number, journal: string, given: (name: string) => boolean): string[] {
  const notes: string[] = []
  if (given('role') && flags.role !== meta.role) {
    const how = meta.role === 'primary' ? 'blockrep demote' : 'blockrep promote'
    notes.push(`role stays ${meta.role} (--role ${flags.role} ignored: init sets the role of a new volume only; use \`${how}\` on the running agent)`)
  }
  if (given('journalSize') && existsSync(journal)) {
    const have = statSync(journal).size
    // the file holds the ring plus a small header: compare to within 1%
    if (Math.abs(have - journalSize) > journalSize / 100 + 64 * 1024) {
      notes.push(`journal stays ${formatBytes(have)} (--journal-size ${formatBytes(journalSize)} ignored: the size is fixed when the journal is created)`)
    }
  }
  if (given('volumeId') && meta.volumeId === '') {
    notes.push(`volume id stays unset (--volume-id ignored: this standby adopts the primary's id at its first sync)`)
  }
  return notes
}
