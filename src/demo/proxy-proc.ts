import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, freePorts, waitFor } from './local-cluster.js'
import type { Teardown } from './local-cluster.js'
import type { ProxyStatus } from '../client/nbd-proxy.js'

/**
 * A `blockrep nbd-proxy` process (the demo's failover act): a local NBD
 * export that follows the controller's configuration center, with its status
 * endpoint, its log in the cluster's folder, stopped at teardown.
 */
export class ProxyProcess {
  proc: ChildProcess | null = null
  readonly log: string

  private constructor(
    readonly dir: string,
    readonly center: string,
    readonly volume: string,
    readonly nbdPort: number,
    readonly adminPort: number,
    readonly args: readonly string[],
  ) {
    this.log = join(dir, 'nbd-proxy.log')
  }

  /** `args`: extra `blockrep nbd-proxy` flags. */
  static async create(td: Teardown, dir: string, center: string, volume: string, args: readonly string[] = []): Promise<ProxyProcess> {
    const [nbdPort, adminPort] = (await freePorts(2)) as [number, number]
    const p = new ProxyProcess(dir, center, volume, nbdPort, adminPort, args)
    td.teardown(() => p.stop())
    return p
  }

  /** Spawns the proxy and waits until it serves NBD (it connects to the primary on its own). */
  async start(timeoutMs = 30_000): Promise<void> {
    appendFileSync(this.log, `--- start ${new Date().toISOString()}\n`)
    const proc = spawn(process.execPath, [CLI, 'nbd-proxy', '--center', this.center, '--volume', this.volume,
      '--listen', `127.0.0.1:${this.nbdPort}`, '--admin', `127.0.0.1:${this.adminPort}`, ...this.args], { stdio: ['ignore', 'pipe', 'pipe'] })
    proc.stdout.on('data', d => appendFileSync(this.log, d))
    proc.stderr.on('data', d => appendFileSync(this.log, d))
    this.proc = proc
    const exited = new Promise<never>((_, reject) => proc.once('exit', code => reject(new Error(`nbd-proxy exited with ${code} during start; log ${this.log}`))))
    exited.catch(() => {})
    await Promise.race([waitFor(async () => (await this.status().catch(() => null))?.listen != null, timeoutMs, 'nbd-proxy serving'), exited])
  }

  async status(): Promise<ProxyStatus> {
    const res = await fetch(`http://127.0.0.1:${this.adminPort}/status`)
    if (!res.ok) throw new Error(`nbd-proxy GET /status: ${res.status}`)
    return (await res.json()) as ProxyStatus
  }

  async stop(): Promise<void> {
    const p = this.proc
    if (p === null || p.exitCode !== null || p.signalCode !== null) return
    const done = new Promise(r => p.once('exit', r))
    p.kill('SIGTERM')
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000)
    await done
    clearTimeout(timer)
    this.proc = null
  }
}
