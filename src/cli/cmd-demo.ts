import type { Command } from 'commander'
import { BlockrepError } from '../util/errors.js'

/** `blockrep demo`: the embedded local demo cluster. */
export function register(program: Command): void {
  program
    .command('demo')
    .description('run a local demo cluster')
    .action(() => {
      throw new BlockrepError('ERR_USAGE', 'not implemented yet')
    })
}
