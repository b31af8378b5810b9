import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { appendFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, TOKEN, freePorts, waitFor } from './local-cluster.js'
import type { Cluster, Teardown } from './local-cluster.js'

/**
 * A `blockrep controller` process over a local Cluster's agents (the demo's
 * failover act and the failover benchmark), with its config and log in the
 * cluster's folder.
 */
export class ControllerProcess {
  proc: ChildProcess | null = null
  readonly config: string
  readonly log: string

  private constructor(readonly dir: string, readonly port: number, readonly cfg: Record<string, unknown>) {
    this.config = join(dir, 'controller.json')
    this.log = join(dir, 'controller.log')
    writeFileSync(this.config, JSON.stringify(cfg, null, 2))
  }

  /** `sites`: node → machine room. `over`: controller config fields to set. */
  static async create(td: Teardown, c: Cluster, sites: Record<string, string>, over: Record<string, unknown> = {}, volume = 'vol0'): Promise<ControllerProcess> {
    const [port] = await freePorts(1)
    const nodes = [...c.nodes.values()].map(n => ({ node: n.id, site: sites[n.id] ?? 'main', admin: `127.0.0.1:${n.adminPort}`, nbd: `127.0.0.1:${n.nbdPort}`, adminToken: TOKEN }))
    const cfg = { listen: `127.0.0.1:${port}`, heartbeatMs: 500, timeoutMs: 1500, leaseMs: 2000, adminToken: TOKEN, log: { level: 'info' }, volumes: [{ id: volume, nodes }], ...over }
    const p = new ControllerProcess(c.dir, port as number, cfg)
    td.teardown(() => p.stop())
    return p
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  async start(): Promise<void> {
    appendFileSync(this.log, `--- start ${new Date().toISOString()}\n`)
    const proc = spawn(process.execPath, [CLI, 'controller', '--config', this.config], { stdio: ['ignore', 'pipe', 'pipe'] })
    proc.stdout.on('data', d => appendFileSync(this.log, d))
    proc.stderr.on('data', d => appendFileSync(this.log, d))
    this.proc = proc
    const exited = new Promise<never>((_, reject) => proc.once('exit', code => reject(new Error(`controller exited with ${code} during start; log ${this.log}`))))
    await Promise.race([waitFor(async () => (await this.get('/v1/status').catch(() => null)) !== null, 15_000, 'controller API'), exited])
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc
    if (p === null || p.exitCode !== null || p.signalCode !== null) return
    const done = new Promise(r => p.once('exit', r))
    p.kill(signal)
    await done
    this.proc = null
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async get(path: string): Promise<any> {
    const res = await fetch(`${this.url}${path}`)
    const text = await res.text()
    if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${text}`)
    return JSON.parse(text)
  }
}
