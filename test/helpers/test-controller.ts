import type { Cluster } from './cluster.js'

/**
 * The test acting as the controller through the agents' admin API
 * (docs/control-plane.md §1): grants and renews leases, promotes and demotes.
 * Times are this process's monotonic clock (performance.now()).
 */
export class TestController {
  /** per node: the send time of the last grant sent (answered or not) */
  readonly lastSentAt = new Map<string, number>()
  /** per node: round trip of the first grant (bounds its one-way delay) */
  readonly firstRtt = new Map<string, number>()
  private timers = new Map<string, NodeJS.Timeout>()

  constructor(
    private readonly c: Cluster,
    readonly id = `test-ctl/${process.pid}`,
    readonly leaseMs = 1500,
    readonly term = 1,
  ) {}

  /** One grant for the node's current epoch. */
  async grant(node: string, epoch?: number): Promise<Record<string, unknown>> {
    const e = epoch ?? (await this.c.status(node)).epoch
    const sentAtMs = performance.now()
    this.lastSentAt.set(node, sentAtMs)
    const res = (await this.c.admin(node, 'POST', '/v1/control/lease', { controller: this.id, term: this.term, epoch: e, leaseMs: this.leaseMs, sentAtMs })) as Record<string, unknown>
    if (!this.firstRtt.has(node)) this.firstRtt.set(node, performance.now() - sentAtMs)
    return res
  }

  /** Renews every `everyMs` until stop(node). */
  renew(node: string, everyMs = 200): void {
    this.stop(node)
    const tick = (): void => {
      void this.grant(node).catch(() => {})
      this.timers.set(node, setTimeout(tick, everyMs))
    }
    this.timers.set(node, setTimeout(tick, everyMs))
  }

  stop(node: string): void {
    const t = this.timers.get(node)
    if (t) clearTimeout(t)
    this.timers.delete(node)
  }

  stopAll(): void {
    for (const n of [...this.timers.keys()]) this.stop(n)
  }

  /** A controlled promote carrying a lease. */
  async promote(node: string, expectEpoch: number): Promise<Record<string, unknown>> {
    const sentAtMs = performance.now()
    this.lastSentAt.set(node, sentAtMs)
    return (await this.c.admin(node, 'POST', '/promote', { controller: this.id, expectEpoch, lease: { term: this.term, leaseMs: this.leaseMs, sentAtMs } })) as Record<string, unknown>
  }

  async demote(node: string): Promise<Record<string, unknown>> {
    return (await this.c.admin(node, 'POST', '/demote', { controller: this.id })) as Record<string, unknown>
  }
}

/** One client write as the test saw it. */
export interface WriteEvent {
  start: number
  end: number
  ok: boolean
  errno: number | null
  block: number
}

/** Writes one block after another (depth 1) until `until()` is true, recording each with timestamps. */
export async function writeLoop(
  write: (offset: number, data: Buffer) => Promise<void>,
  opts: { until: () => boolean; blocks: number; bs?: number; tag?: number; pauseMs?: number },
): Promise<WriteEvent[]> {
  const bs = opts.bs ?? 4096
  const out: WriteEvent[] = []
  let i = 0
  while (!opts.until()) {
    const block = i % opts.blocks
    const data = Buffer.alloc(bs, (opts.tag ?? 0x5a) ^ (i & 0xff))
    data.writeUInt32BE(i, 0)
    const start = performance.now()
    let ok = true
    let errno: number | null = null
    try {
      await write(block * bs, data)
    } catch (err) {
      ok = false
      errno = ((err as { errno?: number }).errno ?? -1) as number
    }
    out.push({ start, end: performance.now(), ok, errno, block })
    i++
    if (opts.pauseMs) await new Promise((r) => setTimeout(r, opts.pauseMs))
  }
  return out
}
