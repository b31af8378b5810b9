import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { appendFileSync, readFileSync } from 'node:fs'
import { CLI, freePorts, waitFor } from './cluster.js'
import type { Cluster } from './cluster.js'
import type { ProxyStatus } from '../../src/client/nbd-proxy.js'

export interface ProxyProcess {
  proc: ChildProcess
  nbdPort: number
  adminPort: number
  url: string
  log: string
  status(): Promise<ProxyStatus>
  logText(): string
  stop(): Promise<number | null>
}

/**
 * `blockrep nbd-proxy` as a child process, with its status endpoint; waits
 * until it serves, stops it at teardown. `args` are extra flags.
 */
export async function startProxy(t: { teardown(fn: () => unknown): void }, opts: { center: string; volume: string; log: string; args?: string[] }): Promise<ProxyProcess> {
  const [nbdPort, adminPort] = (await freePorts(2)) as [number, number]
  const proc = spawn(process.execPath, [CLI, 'nbd-proxy', '--center', opts.center, '--volume', opts.volume,
    '--listen', `127.0.0.1:${nbdPort}`, '--admin', `127.0.0.1:${adminPort}`, ...(opts.args ?? [])],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BLOCKREP_LOG_LEVEL: process.env.BLOCKREP_LOG_LEVEL ?? 'debug' } })
  proc.stdout?.on('data', d => appendFileSync(opts.log, d))
  proc.stderr?.on('data', d => appendFileSync(opts.log, d))
  const stop = async (): Promise<number | null> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode
    const done = new Promise<number | null>(r => proc.once('exit', code => r(code)))
    proc.kill('SIGTERM')
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
    const code = await done
    clearTimeout(timer)
    return code
  }
  t.teardown(stop)
  const status = async (): Promise<ProxyStatus> => {
    const res = await fetch(`http://127.0.0.1:${adminPort}/status`)
    return (await res.json()) as ProxyStatus
  }
  const exited = new Promise<never>((_, reject) => proc.once('exit', code => reject(new Error(`nbd-proxy exited with ${code}; log ${opts.log}`))))
  exited.catch(() => {})
  await Promise.race([waitFor(async () => (await status().catch(() => null))?.listen != null, 60_000, 'nbd-proxy serving'), exited])
  return { proc, nbdPort, adminPort, url: `nbd://127.0.0.1:${nbdPort}`, log: opts.log, status, logText: () => readFileSync(opts.log, 'utf8'), stop }
}

/**
 * `c.start(id)`, but patient on a loaded machine: the shared helper gives an
 * agent 15 s to answer; past that, keep waiting (up to `ms`) for the same
 * process rather than fail the test.
 */
export async function startAgent(c: Cluster, id: string, ms = 60_000): Promise<void> {
  try {
    await c.start(id)
  } catch (err) {
    if (!/timed out/.test((err as Error).message) || c.node(id).proc === null) throw err
    await waitFor(async () => (await c.status(id).catch(() => null)) !== null, ms, `agent ${id} admin API (slow start)`)
  }
}

/** startAgent for every node, in order. */
export async function startAll(c: Cluster): Promise<void> {
  for (const id of c.opts.nodes) await startAgent(c, id)
}
