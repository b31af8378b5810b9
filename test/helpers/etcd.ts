/**
 * Real etcd servers for the tests: one member or a three-member cluster on
 * free loopback ports, each in its own temp data folder, removed on stop.
 * Members can be killed (any signal) and restarted on the same data folder.
 * A missing `etcd` binary skips on a developer's machine and fails on CI
 * (test/helpers/tools.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { freePorts, waitFor } from './cluster.js'
import { have, skipUnless } from './tools.js'

/** The reason to skip etcd tests here, or false (throws on CI when etcd is missing). */
export function skipWithoutEtcd(): string | false {
  return skipUnless(have('etcd'), 'etcd (Debian package etcd-server)')
}

export interface EtcdMember {
  readonly name: string
  readonly clientPort: number
  readonly peerPort: number
  readonly dataDir: string
  /** "127.0.0.1:port" of the client API */
  readonly endpoint: string
  proc: ChildProcess | null
}

export interface EtcdClusterOptions {
  /** 1 or 3 (any odd count works); default 1 */
  members?: number
  /** etcd --heartbeat-interval, ms (etcd default 100) */
  heartbeatMs?: number
  /** etcd --election-timeout, ms (etcd default 1000) */
  electionMs?: number
  /** etcd --log-level (default warn); the logs are in the temp folder, see logTail */
  logLevel?: 'debug' | 'info' | 'warn' | 'error'
}

export class EtcdCluster {
  readonly members: EtcdMember[]
  private readonly root: string
  private readonly opts: Required<EtcdClusterOptions>

  private constructor(root: string, members: EtcdMember[], opts: Required<EtcdClusterOptions>) {
    this.root = root
    this.members = members
    this.opts = opts
  }

  /** Starts the members and waits until every one reports healthy. */
  static async start(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const opts: Required<EtcdClusterOptions> = { members: 1, heartbeatMs: 100, electionMs: 1000, logLevel: 'warn', ...options }
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'blockrep-etcd-'))
    const ports = await freePorts(opts.members * 2)
    const members: EtcdMember[] = []
    for (let i = 0; i < opts.members; i++) {
      const clientPort = ports[2 * i]!
      const peerPort = ports[2 * i + 1]!
      members.push({ name: `m${i}`, clientPort, peerPort, dataDir: path.join(root, `m${i}`), endpoint: `127.0.0.1:${clientPort}`, proc: null })
    }
    const cluster = new EtcdCluster(root, members, opts)
    try {
      for (let i = 0; i < members.length; i++) cluster.spawnMember(i)
      await Promise.all(members.map((_, i) => cluster.waitHealthy(i)))
    } catch (err) {
      await cluster.stop()
      throw err
    }
    return cluster
  }

  /** The store URL naming every member: etcd://127.0.0.1:p1,127.0.0.1:p2,… */
  url(prefix?: string): string {
    return `etcd://${this.endpoints().join(',')}${prefix === undefined ? '' : prefix}`
  }

  endpoints(): string[] {
    return this.members.map((m) => m.endpoint)
  }

  private spawnMember(i: number): void {
    const m = this.members[i]!
    const initialCluster = this.members.map((x) => `${x.name}=http://127.0.0.1:${x.peerPort}`).join(',')
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', path.basename(this.root),
      '--heartbeat-interval', String(this.opts.heartbeatMs),
      '--election-timeout', String(this.opts.electionMs),
      '--logger', 'zap',
      '--log-level', this.opts.logLevel,
    ]
    const log = fs.openSync(path.join(this.root, `${m.name}.log`), 'a')
    const proc = spawn('etcd', args, { stdio: ['ignore', log, log] })
    fs.closeSync(log)
    proc.on('error', () => {})
    m.proc = proc
  }

  /** Waits until member `i` answers /health with true (it is part of a quorum). */
  async waitHealthy(i: number, timeoutMs = 30000): Promise<void> {
    const m = this.members[i]!
    await waitFor(async () => {
      if (m.proc === null || m.proc.exitCode !== null) throw new Error(`etcd member ${m.name} exited: ${this.logTail(i)}`)
      try {
        const res = await fetch(`http://${m.endpoint}/health`, { signal: AbortSignal.timeout(2000) })
        const body = (await res.json()) as { health?: string }
        return body.health === 'true'
      } catch {
        return false
      }
    }, timeoutMs, `etcd member ${m.name} healthy`)
  }

  /** The index of the member that is the raft leader now, or null (asks every running member). */
  async leaderIndex(): Promise<number | null> {
    const ids: (string | null)[] = []
    let leader: string | null = null
    for (const m of this.members) {
      try {
        const res = await fetch(`http://${m.endpoint}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(2000) })
        const body = (await res.json()) as { header?: { member_id?: string }; leader?: string }
        ids.push(body.header?.member_id ?? null)
        leader = body.leader ?? leader
      } catch {
        ids.push(null)
      }
    }
    const i = leader === null ? -1 : ids.indexOf(leader)
    return i === -1 ? null : i
  }

  /** Sends `signal` to member `i` and, for a terminating signal, waits until it exited. */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const m = this.members[i]!
    const proc = m.proc
    if (proc === null) return
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') {
      proc.kill(signal)
      return
    }
    await stopProcess(proc, signal)
    m.proc = null
  }

  /** Starts member `i` again on its data folder and waits for it to be healthy. */
  async restart(i: number, waitHealthy = true): Promise<void> {
    if (this.members[i]!.proc !== null) await this.kill(i, 'SIGTERM')
    this.spawnMember(i)
    if (waitHealthy) await this.waitHealthy(i)
  }

  /** The last lines of member `i`'s log, for failure messages. */
  logTail(i: number, lines = 20): string {
    try {
      const text = fs.readFileSync(path.join(this.root, `${this.members[i]!.name}.log`), 'utf8')
      return text.trim().split('\n').slice(-lines).join('\n')
    } catch {
      return '(no log)'
    }
  }

  /** Stops every member (SIGTERM, then SIGKILL after 5 s) and removes the data folders. */
  async stop(): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        if (m.proc === null) return
        m.proc.kill('SIGCONT')
        await stopProcess(m.proc, 'SIGTERM')
        m.proc = null
      }),
    )
    fs.rmSync(this.root, { recursive: true, force: true })
  }
}

/** Sends `signal`, waits up to `graceMs` for the exit, then SIGKILLs and waits again. */
export async function stopProcess(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  proc.kill(signal)
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}
