import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { Option } from 'commander'
import type { Command } from 'commander'
import { NodeStore, defaultPaths } from '../replication/node-store.js'
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
      // a new primary gets a fresh id; re-running init on an existing volume validates it instead
      const volumeId = flags.volumeId ?? (flags.role === 'primary' && !existsSync(paths.meta) ? randomUUID() : '')
      const warnings: string[] = []
      const meta = NodeStore.init({ ...paths, nodeId: flags.node, size, blockSize, journalSize, role: flags.role, volumeId }, warnings)
      for (const w of warnings) process.stderr.write(`blockrep: warning: ${w}\n`)
      const out = cmd.parent?.configureOutput().writeOut ?? ((s: string) => process.stdout.write(s))
      out(
        `volume ${meta.volumeId || '(adopted at first sync)'}: ${formatBytes(meta.size)} in ${meta.blockSize}-byte blocks, node ${meta.nodeId}, role ${meta.role}\n` +
          `  data ${paths.data}\n  meta ${paths.meta}\n  journal ${paths.journal}\n`,
      )
    })
}
