import { spawn, execFile } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { createReadStream, writeFileSync, mkdtempSync, rmSync, appendFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { NbdClient } from '../client/nbd-client.js'
import type { NodeStatus } from '../agent/status-types.js'

const pexec = promisify(execFile)
/** The compiled CLI (this file is dist/src/demo/local-cluster.js once built, or src/demo/ under a TS loader). */
export const CLI = cliPath()

function cliPath(): string {
  const here = fileURLToPath(new URL('.', import.meta.url))
  return /[\\/]dist[\\/]src[\\/]demo[\\/]?$/.test(here) ? resolve(here, '../cli/main.js') : resolve(here, '../../dist/src/cli/main.js')
}
export const SECRET = randomBytes(24).toString('hex')
export const TOKEN = randomBytes(16).toString('hex')

/**
 * Free loopback TCP ports, chosen at random below Linux's ephemeral range
 * (32768+) so they cannot collide with the source ports of outgoing
 * connections, and checked by binding them.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = []
  const ports: number[] = []
  while (ports.length < n) {
    const port = 12000 + Math.floor(Math.random() * 20000)
    if (ports.includes(port)) continue
    const s = net.createServer()
    const ok = await new Promise<boolean>((r) => {
      s.once('error', () => r(false))
      s.listen(port, '127.0.0.1', () => r(true))
    })
    if (!ok) continue
    servers.push(s)
    ports.push(port)
  }
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  return ports
}

export interface ClusterOptions {
  /** node ids; the first is the primary */
  nodes: string[]
  size: number
  journalSize?: number
  protocol?: 'sync' | 'async'
  tunables?: Record<string, unknown>
  /** extra config per node */
  extra?: Record<string, Record<string, unknown>>
}

export interface TestNode {
  id: string
  data: string
  config: string
  replPort: number
  adminPort: number
  nbdPort: number
  proc: ChildProcess | null
  log: string
}

/** Something that runs cleanup at the end (tap's `t`, or the demo). */
export interface Teardown {
  teardown(fn: () => unknown): void
}

/**
 * A primary and its standbys as separate agent processes on loopback, in a
 * temp folder removed at teardown. Writes go through the primary's NBD export.
 * Used by `blockrep demo` and by the end-to-end tests.
 */
export class Cluster {
  readonly nodes = new Map<string, TestNode>()

  constructor(
    readonly dir: string,
    readonly opts: ClusterOptions,
  ) {}

  static async create(t: Teardown, opts: ClusterOptions): Promise<Cluster> {
    const dir = mkdtempSync(join(tmpdir(), 'blockrep-'))
    const c = new Cluster(dir, opts)
    const ports = await freePorts(opts.nodes.length * 3)
    opts.nodes.forEach((id, i) => {
      c.nodes.set(id, {
        id,
        data: join(dir, `${id}.img`),
        config: join(dir, `${id}.json`),
        replPort: ports[i * 3],
        adminPort: ports[i * 3 + 1],
        nbdPort: ports[i * 3 + 2],
        proc: null,
        log: join(dir, `${id}.log`),
      })
    })
    t.teardown(async () => {
      await Promise.all([...c.nodes.keys()].map((id) => c.kill(id)))
      if (!process.env.BLOCKREP_KEEP_DIR) rmSync(dir, { recursive: true, force: true })
    })
    for (const id of opts.nodes) c.writeConfig(id)
    return c
  }

  node(id: string): TestNode {
    const n = this.nodes.get(id)
    if (!n) throw new Error(`no node ${id}`)
    return n
  }

  get primaryId(): string {
    return this.opts.nodes[0]
  }

  writeConfig(id: string, role?: 'primary' | 'standby'): void {
    const n = this.node(id)
    const isPrimary = role ? role === 'primary' : id === this.primaryId
    const peers = [...this.nodes.values()]
      .filter((p) => p.id !== id)
      .map((p) => ({ node: p.id, address: `127.0.0.1:${p.replPort}`, protocol: this.opts.protocol ?? 'sync' }))
    const cfg = {
      node: id,
      data: n.data,
      role: isPrimary ? 'primary' : 'standby',
      listen: `127.0.0.1:${n.replPort}`,
      admin: `127.0.0.1:${n.adminPort}`,
      adminToken: TOKEN,
      nbd: `127.0.0.1:${n.nbdPort}`,
      secret: SECRET,
      peers,
      log: { level: process.env.BLOCKREP_CLUSTER_LOG ?? 'info' },
      tunables: { journalSize: this.opts.journalSize ?? 64 * 1024 * 1024, maxBatchBytes: Math.min(4 * 1024 * 1024, (this.opts.journalSize ?? 64 * 1024 * 1024) / 4), reconnectMinMs: 100, reconnectMaxMs: 500, heartbeatMs: 300, peerTimeoutMs: 3000, ...this.opts.tunables },
      ...this.opts.extra?.[id],
    }
    writeFileSync(n.config, JSON.stringify(cfg, null, 2))
  }

  /** `blockrep init` for one node (primary or standby per its place in the list). */
  async init(id: string, args: string[] = []): Promise<void> {
    const n = this.node(id)
    const role = id === this.primaryId ? 'primary' : 'standby'
    await run(['init', '--data', n.data, '--size', String(this.opts.size), '--node', id, '--role', role, '--journal-size', String(this.opts.journalSize ?? 64 * 1024 * 1024), ...args])
  }

  async initAll(): Promise<void> {
    for (const id of this.opts.nodes) await this.init(id)
  }

  /** Spawns the agent and waits until its admin API answers (for up to `timeoutMs`: more on a loaded machine). */
  async start(id: string, timeoutMs = 60_000): Promise<void> {
    const n = this.node(id)
    appendFileSync(n.log, `--- start ${new Date().toISOString()}\n`)
    // BLOCKREP_AGENT_NODE_ARGS: extra node flags for the agents, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
    const nodeArgs = (process.env.BLOCKREP_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean)
    const proc = spawn(process.execPath, [...nodeArgs, CLI, 'agent', '--config', n.config], { stdio: ['ignore', 'pipe', 'pipe'] })
    proc.stdout!.on('data', (d) => appendFileSync(n.log, d))
    proc.stderr!.on('data', (d) => appendFileSync(n.log, d))
    n.proc = proc
    const exited = new Promise<never>((_, reject) => proc.once('exit', (code) => reject(new Error(`agent ${id} exited with ${code} during start; log ${n.log}`))))
    await Promise.race([waitFor(async () => (await this.status(id).catch(() => null)) !== null, timeoutMs, `agent ${id} admin API`), exited])
  }

  async startAll(): Promise<void> {
    for (const id of this.opts.nodes) await this.start(id)
  }

  /** Stops an agent: SIGKILL by default (a crash), or SIGTERM (clean shutdown). */
  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    const n = this.node(id)
    const p = n.proc
    if (!p || p.exitCode !== null || p.signalCode !== null) {
      n.proc = null
      return p?.exitCode ?? null
    }
    const done = new Promise<number | null>((r) => p.once('exit', (code) => r(code)))
    p.kill(signal)
    const code = await done
    n.proc = null
    return code
  }

  async status(id: string): Promise<NodeStatus> {
    return (await this.admin(id, 'GET', '/status')) as NodeStatus
  }

  async admin(id: string, method: string, path: string, body?: unknown): Promise<unknown> {
    const n = this.node(id)
    const res = await fetch(`http://127.0.0.1:${n.adminPort}${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${path} on ${id}: ${res.status} ${text}`)
    return text ? JSON.parse(text) : null
  }

  /** Waits until the primary reports `peer` streaming with acked == head. */
  async waitInSync(peer: string, timeoutMs = 60_000, primary = this.primaryId): Promise<NodeStatus> {
    let last: NodeStatus | null = null
    await waitFor(async () => {
      last = await this.status(primary)
      const p = last.peers.find((x) => x.node === peer)
      return !!p && p.state === 'streaming' && p.ackedSeq === last.headSeq && p.resync === null
    }, timeoutMs, `${peer} in sync with ${primary}`)
    return last!
  }

  async nbd(id = this.primaryId): Promise<NbdClient> {
    return NbdClient.connect('127.0.0.1', this.node(id).nbdPort)
  }

  async sha(id: string): Promise<string> {
    return sha256File(this.node(id).data)
  }

  logOf(id: string): Promise<string> {
    return import('node:fs/promises').then((fs) => fs.readFile(this.node(id).log, 'utf8').catch(() => ''))
  }
}

export async function run(args: string[], opts: { env?: Record<string, string> } = {}): Promise<{ stdout: string; stderr: string }> {
  return pexec(process.execPath, [CLI, ...args], { env: { ...process.env, ...opts.env }, maxBuffer: 16 * 1024 * 1024 })
}

export async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await cond()) return
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256')
    createReadStream(path).on('data', (d) => h.update(d)).on('end', () => resolve(h.digest('hex'))).on('error', reject)
  })
}

/** Writes `count` random blocks of `bs` bytes at random block offsets, `depth` in flight. */
export async function randomWrites(c: NbdClient, size: number, count: number, bs = 4096, depth = 16, seed = 1): Promise<Set<number>> {
  let x = seed >>> 0 || 1
  const rnd = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) / 4294967296)
  const blocks = new Set<number>()
  const inflight = new Set<Promise<void>>()
  for (let i = 0; i < count; i++) {
    const b = Math.floor(rnd() * (size / bs))
    blocks.add(b)
    const data = Buffer.alloc(bs, (b + i) & 0xff)
    data.writeUInt32BE(i, 0)
    const p = c.write(b * bs, data).finally(() => inflight.delete(p))
    inflight.add(p)
    if (inflight.size >= depth) await Promise.race(inflight)
  }
  await Promise.all(inflight)
  return blocks
}
