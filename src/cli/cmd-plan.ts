import type { Command } from 'commander'
import { addAdminOptions, adminClientFrom } from './admin-client.js'
import type { AdminCliOptions } from './admin-client.js'
import { renderPlan } from './format-status.js'

/** `blockrep plan`: per peer, the mode a handshake would choose now and what it would move. */
export function register(program: Command): void {
  const cmd = program
    .command('plan')
    .description('per peer, the catch-up mode the handshake would choose now and the blocks/bytes it would move')
    .option('--json', 'print the plan as JSON')
  addAdminOptions(cmd).action(async (opts: AdminCliOptions & { json?: boolean }) => {
    const plan = await adminClientFrom(opts).plan()
    process.stdout.write(opts.json === true ? `${JSON.stringify(plan, null, 2)}\n` : renderPlan(plan))
  })
}
