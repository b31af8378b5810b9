import type { Command } from 'commander'
import { BlockrepError } from '../util/errors.js'

/** `blockrep agent`: runs one node's agent in the foreground. */
export function register(program: Command): void {
  program
    .command('agent')
    .description('run one node\'s agent in the foreground')
    .requiredOption('--config <file>', 'agent config file (JSON or YAML)')
    .action(() => {
      throw new BlockrepError('ERR_USAGE', 'not implemented yet')
    })
}
