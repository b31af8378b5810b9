import type { Command } from 'commander'
import { BlockrepError, ErrorCode } from '../util/errors.js'
import { addAdminOptions, adminClientFrom } from './admin-client.js'
import type { AdminCliOptions } from './admin-client.js'
import { createProgressDisplay, RateWindow, renderVerifyResult } from './format-status.js'
import { parseInterval, sleep } from './cmd-status.js'
import type { ProgressFigures, VerifyJob } from '../agent/status-types.js'

/** promote, demote, verify, connect, disconnect: the state-changing admin calls. */
export function register(program: Command): void {
  addAdminOptions(
    program
      .command('promote')
      .description('make this node primary in a new epoch')
      .option('--force', 'promote even while this node is inconsistent (an incomplete resync); demote the old primary first, or it is refused as split brain when it returns'),
  ).action(async (opts: AdminCliOptions & { force?: boolean }) => {
    const { epoch, alreadyPrimary } = await adminClientFrom(opts).promote(opts.force === true)
    process.stdout.write(alreadyPrimary === true ? `already primary (epoch ${epoch}): nothing changed\n` : `promoted: primary in epoch ${epoch}\n`)
  })

  addAdminOptions(program.command('demote').description('make this node a standby')).action(async (opts: AdminCliOptions) => {
    const { alreadyStandby } = await adminClientFrom(opts).demote()
    process.stdout.write(alreadyStandby ? 'already a standby: nothing changed\n' : 'demoted: standby\n')
  })

  addAdminOptions(
    program
      .command('verify')
      .description('compare every block with a peer; shows progress with ETA, then the differing blocks (exit 1 when some differ)')
      .requiredOption('--peer <id>', 'peer node id')
      .option('--json', 'print the result as JSON (progress still goes to stderr)')
      .option('--interval <ms>', 'poll interval', '1000'),
  ).action(async (opts: AdminCliOptions & { peer: string; json?: boolean; interval: string }) => {
    const interval = parseInterval(opts.interval)
    const client = adminClientFrom(opts)
    // progress on stderr, the result on stdout
    const display = createProgressDisplay(process.stderr, process.stderr.isTTY === true)
    const window = new RateWindow()
    let job: VerifyJob = await client.startVerify(opts.peer)
    try {
      while (job.state === 'running') {
        if (job.progress !== null) display.update(opts.peer, `verify ${opts.peer}`, withRate(job.progress, window), Date.now())
        await sleep(interval)
        job = await client.verifyJob(opts.peer)
      }
    } finally {
      display.stop()
    }
    if (job.state === 'failed' || job.result === null) {
      const e = job.error ?? { code: 'ERR_INTERNAL', message: 'verify ended without a result' }
      const code = (Object.values(ErrorCode) as string[]).includes(e.code) ? (e.code as ErrorCode) : 'ERR_IO'
      throw new BlockrepError(code, `verify ${opts.peer} failed: ${e.message}`, { context: { remoteCode: e.code } })
    }
    const r = job.result
    process.stdout.write(opts.json === true ? `${JSON.stringify(r, null, 2)}\n` : renderVerifyResult(r))
    if (r.differingBlocks.length > 0) process.exitCode = 1
  })

  addAdminOptions(
    program.command('connect').description('(re)connect to a peer now').requiredOption('--peer <id>', 'peer node id'),
  ).action(async (opts: AdminCliOptions & { peer: string }) => {
    await adminClientFrom(opts).connect(opts.peer)
    process.stdout.write(`connecting to ${opts.peer}\n`)
  })

  addAdminOptions(
    program.command('disconnect').description('drop the connection to a peer').requiredOption('--peer <id>', 'peer node id'),
  ).action(async (opts: AdminCliOptions & { peer: string }) => {
    await adminClientFrom(opts).disconnect(opts.peer)
    process.stdout.write(`disconnected from ${opts.peer}\n`)
  })
}

/** Fills in rate and ETA from the polled samples when the agent does not report them. */
function withRate(p: ProgressFigures, window: RateWindow): ProgressFigures {
  window.push({ t: Date.now(), blocksDone: p.blocksDone, bytesDone: p.bytesDone })
  if (p.rateBytesPerSec > 0 || p.etaSeconds !== null) return p
  const e = window.estimate(p.blocksTotal)
  return e.etaSeconds === null ? p : { ...p, rateBytesPerSec: e.rateBytesPerSec, etaSeconds: e.etaSeconds }
}
