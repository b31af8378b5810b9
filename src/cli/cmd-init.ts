import { Option } from 'commander'
import type { Command } from 'commander'
import { BlockrepError } from '../util/errors.js'

/** `blockrep init`: creates or validates a volume's data file, metadata and journal. */
export function register(program: Command): void {
  program
    .command('init')
    .description('create (or validate) a volume: data file, metadata and journal')
    .requiredOption('--data <path>', 'data file or block device')
    .requiredOption('--size <size>', 'volume size, e.g. 4G')
    .requiredOption('--node <id>', 'this node\'s id')
    .option('--meta <path>', 'metadata file (default: <data>.meta)')
    .option('--block-size <bytes>', 'block size', '4096')
    .option('--journal-size <size>', 'journal ring size', '256M')
    .option('--volume-id <uuid>', 'volume id (default: a new UUID)')
    .addOption(new Option('--role <role>', 'initial role').choices(['primary', 'standby']).default('standby'))
    .action(() => {
      throw new BlockrepError('ERR_USAGE', 'not implemented yet')
    })
}
