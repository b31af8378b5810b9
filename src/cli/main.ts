#!/usr/bin/env node
import { readFileSync, realpathSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command, CommanderError } from 'commander'
import { BlockrepError } from '../util/errors.js'
import { AdminApiError } from './admin-client.js'
import { register as registerInit } from './cmd-init.js'
import { register as registerAgent } from './cmd-agent.js'
import { register as registerStatus } from './cmd-status.js'
import { register as registerPlan } from './cmd-plan.js'
import { register as registerAdmin } from './cmd-admin.js'
import { register as registerDemo } from './cmd-demo.js'
import { register as registerBacklog } from './cmd-backlog.js'
import { register as registerController } from './cmd-controller.js'
import { register as registerNbdProxy } from './cmd-nbd-proxy.js'

/** Exit codes: 0 ok, 1 operational failure, 2 usage error. */
export const ExitCode = { OK: 0, FAILURE: 1, USAGE: 2 } as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

export interface CliIo {
  out: (s: string) => void
  err: (s: string) => void
}

const defaultIo: CliIo = { out: s => process.stdout.write(s), err: s => process.stderr.write(s) }

/** The `blockrep` program with every subcommand; errors throw (exitOverride) instead of exiting. */
export function buildProgram(io: CliIo = defaultIo): Command {
  const program = new Command('blockrep')
    .description('block-volume replication: primary/standby with incremental catch-up and an NBD export')
    .version(version(), '-V, --version', 'print the version')
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({
      writeOut: io.out,
      writeErr: io.err,
      outputError: (s, write) => write(`blockrep: ${s}`),
    })
  // subcommands made with program.command() inherit exitOverride and output settings
  registerInit(program)
  registerAgent(program)
  registerStatus(program)
  registerPlan(program)
  registerAdmin(program)
  registerDemo(program)
  registerBacklog(program)
  registerController(program)
  registerNbdProxy(program)
  program.addHelpText('after', `
Exit codes: 0 ok, 1 operational failure, 2 usage error.
Admin commands talk to the agent's admin API (--admin, env BLOCKREP_ADMIN, default 127.0.0.1:7800);
state-changing ones need --token or env BLOCKREP_TOKEN.`)
  return program
}

/** The exit code for an error out of parseAsync; prints what commander has not printed. */
export function exitCodeFor(err: unknown, io: CliIo = defaultIo): ExitCode {
  if (err instanceof CommanderError) {
    // commander already printed the message (or the help)
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return ExitCode.OK
    if (err.code === 'commander.help') return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE
    return ExitCode.USAGE
  }
  if (err instanceof BlockrepError) {
    const code = err instanceof AdminApiError ? err.remoteCode : err.code
    io.err(`blockrep: ${code}: ${err.message}\n`)
    if (err.code === 'ERR_USAGE') {
      io.err('(add --help for usage)\n')
      return ExitCode.USAGE
    }
    return ExitCode.FAILURE
  }
  const e = err instanceof Error ? err : new Error(String(err))
  io.err(`blockrep: unexpected error: ${process.env.BLOCKREP_DEBUG ? (e.stack ?? e.message) : e.message}\n`)
  return ExitCode.FAILURE
}

/** Runs the CLI; resolves with the exit code (an action may raise it via process.exitCode). */
export async function main(argv: readonly string[] = process.argv, io: CliIo = defaultIo): Promise<number> {
  try {
    await buildProgram(io).parseAsync(argv as string[])
    return Number(process.exitCode ?? ExitCode.OK)
  } catch (err) {
    return exitCodeFor(err, io)
  }
}

function version(): string {
  // src/cli/ under ts, dist/src/cli/ once compiled: look upwards for our package.json
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'blockrep' && typeof pkg.version === 'string') return pkg.version
    } catch {
      // keep looking
    }
    dir = dirname(dir)
  }
  return '0.0.0'
}

function invokedDirectly(): boolean {
  const script = process.argv[1]
  if (script === undefined) return false
  try {
    return realpathSync(script) === fileURLToPath(import.meta.url)
  } catch {
    return false
  }
}

if (invokedDirectly()) {
  main().then(
    code => {
      process.exitCode = code
    },
    err => {
      process.exitCode = exitCodeFor(err)
    },
  )
}
