import { BlockrepError } from '../util/errors.js'
import type { Controller } from './controller.js'
import type { NodeRuntime, VolumeRuntime } from './runtime.js'
import { chooseStandby } from './failover-choice.js'
import type { Candidate, Choice } from './failover-choice.js'
import { fenceVerdict } from './fencing.js'
import type { VolumeDoc } from './store.js'

/** One failover or switchover, as `GET /v1/status` shows it. */
export interface FailoverRecord {
  id: number
  kind: 'failover' | 'switchover'
  volume: string
  from: string
  to: string | null
  reason: string
  state: 'running' | 'done' | 'blocked' | 'failed'
  /** ms since the Unix epoch */
  startedAt: number
  epoch: number | null
  /** each step with its wall time and ms since the start (monotonic) */
  steps: { step: string; at: number; afterMs: number; detail: string }[]
  outcome: string | null
}

const MAX_RECORDS = 50

/**
 * The failover procedure, in the order of issue 8: decide the primary failed
 * (the caller did); check a standby is available; stop replication from the
 * failed primary (demote it, best effort); fence (wait out its lease on our
 * monotonic clock); promote the chosen standby into a new epoch with
 * expectEpoch and a lease; publish the new document.
 */
export class FailoverRunner {
  private nextId = 1
  /** per volume: the last blocked reason logged, so a blocked failover logs once per reason */
  private readonly lastBlocked = new Map<string, string>()

  constructor(private readonly ctl: Controller) {}

  /** A blocked failover is retried every evaluation; this only keeps it from running twice at once. */
  mayStart(v: VolumeRuntime): boolean {
    return v.busy === null && !this.ctl.isStopped
  }

  async failover(v: VolumeRuntime, reason: string): Promise<void> {
    const ctl = this.ctl
    const doc = v.doc?.value as VolumeDoc
    const from = doc.primary?.node as string
    const old = v.nodes.get(from) as NodeRuntime
    const t0 = ctl.clock.mono()

    const first = this.choose(v, doc, from)
    if (!first.ok) {
      v.blockedReason = first.reason
      if (this.lastBlocked.get(v.cfg.id) !== first.reason) {
        this.lastBlocked.set(v.cfg.id, first.reason)
        ctl.log.error({ volume: v.cfg.id, primary: from, why: reason, considered: first.considered }, `failover blocked: ${first.reason}`)
        const rec = this.record('failover', v.cfg.id, from, reason)
        this.step(rec, t0, 'detected', reason)
        rec.state = 'blocked'
        rec.outcome = first.reason
      }
      return
    }
    this.lastBlocked.delete(v.cfg.id)
    v.blockedReason = null
    const rec = this.record('failover', v.cfg.id, from, reason)
    this.step(rec, t0, 'detected', reason)
    this.step(rec, t0, 'standby-checked', first.reason)
    ctl.log.warn({ volume: v.cfg.id, primary: from, why: reason, candidate: first.node }, 'primary failed: failing over')

    // stop replication from the failed primary: if it still answers, it must stop accepting and shipping writes
    const demoteTimeout = ctl.available(old) ? Math.max(ctl.cfg.timeoutMs, 5000) : Math.min(ctl.cfg.timeoutMs, 1000)
    const stopped = await old.client.demote(ctl.id, demoteTimeout).then(() => {
      ctl.roleChanged(old, 'standby', null)
      return 'demoted'
    }, (err: Error) => `not reachable (${err.message})`)
    this.step(rec, t0, 'replication-stopped', `old primary ${from}: ${stopped}`)

    // fence: the old primary's lease must have run out on its own clock
    const fence = fenceVerdict({ now: ctl.clock.mono(), lastGrantSentAt: old.lastGrantSentAt, takeoverAt: ctl.takeoverAt, leaseMs: ctl.cfg.leaseMs })
    if (!fence.mayPromote) {
      ctl.log.info({ volume: v.cfg.id, waitMs: Math.ceil(fence.waitMs) }, `fencing: ${fence.reason}`)
      await sleep(fence.until - ctl.clock.mono())
    }
    this.step(rec, t0, 'fenced', fenceVerdict({ now: ctl.clock.mono(), lastGrantSentAt: old.lastGrantSentAt, takeoverAt: ctl.takeoverAt, leaseMs: ctl.cfg.leaseMs }).reason)
    if (ctl.isStopped) return this.fail(rec, 'the controller is stopping')

    // positions may have moved while fencing: choose again on fresh heartbeats
    const choice = this.choose(v, doc, from)
    if (!choice.ok) {
      v.blockedReason = choice.reason
      rec.state = 'blocked'
      rec.outcome = choice.reason
      return
    }
    const target = v.nodes.get(choice.node) as NodeRuntime
    const epoch = await this.promote(v, target, rec, t0)
    if (epoch === null) return
    v.recovering = { from, to: target.cfg.node, epoch }
    await ctl.publish(v, target.cfg.node, epoch)
    this.step(rec, t0, 'published', `epoch ${epoch}: ${target.cfg.node} serves ${v.cfg.id} at ${target.cfg.nbd}`)
    rec.state = 'done'
    rec.epoch = epoch
    rec.outcome = `${target.cfg.node} promoted into epoch ${epoch} in ${Math.round(ctl.clock.mono() - t0)} ms after detection`
    ctl.log.warn({ volume: v.cfg.id, from, to: target.cfg.node, epoch, ms: Math.round(ctl.clock.mono() - t0) }, 'failover done')
  }

  /** Planned switchover: demote the primary (must succeed), let `to` catch up, promote it, publish. */
  async switchover(v: VolumeRuntime, to: string): Promise<VolumeDoc> {
    const ctl = this.ctl
    const doc = v.doc?.value
    if (doc === undefined || doc.primary === null) throw new BlockrepError('ERR_NO_PRIMARY', `volume ${v.cfg.id} has no published primary`)
    const from = doc.primary.node
    const target = v.nodes.get(to)
    if (target === undefined) throw new BlockrepError('ERR_USAGE', `volume ${v.cfg.id} has no node "${to}"`)
    if (to === from) throw new BlockrepError('ERR_USAGE', `${to} is already the primary of ${v.cfg.id}`)
    const old = v.nodes.get(from) as NodeRuntime
    if (!ctl.seen(target) || target.status?.role !== 'standby' || target.status.consistent !== true) {
      throw new BlockrepError('ERR_NOT_PRIMARY', `${to} cannot take over: it must answer and be a consistent standby (role ${target.status?.role ?? 'unknown'}, consistent ${target.status?.consistent ?? 'unknown'})`)
    }
    const t0 = ctl.clock.mono()
    const rec = this.record('switchover', v.cfg.id, from, `switchover to ${to} requested`)
    this.step(rec, t0, 'requested', `to ${to}`)
    try {
      await old.client.demote(ctl.id, Math.max(ctl.cfg.timeoutMs, 10_000))
      ctl.roleChanged(old, 'standby', null)
    } catch (err) {
      this.fail(rec, `the primary ${from} could not be demoted: ${(err as Error).message}`)
      throw new BlockrepError('ERR_NOT_PRIMARY', `switchover refused: the primary ${from} could not be demoted (${(err as Error).message})`)
    }
    const oldStatus = await old.client.status(ctl.cfg.timeoutMs).catch(() => null)
    this.step(rec, t0, 'replication-stopped', `${from} demoted at head ${oldStatus?.headSeq ?? '?'}`)
    const deadline = ctl.clock.mono() + 4 * ctl.cfg.timeoutMs
    for (;;) {
      const s = await target.client.status(ctl.cfg.timeoutMs).catch(() => null)
      if (s !== null) target.status = s
      if (s !== null && (oldStatus === null || s.headSeq >= oldStatus.headSeq)) break
      if (ctl.clock.mono() > deadline) break
      await sleep(ctl.cfg.heartbeatMs / 2)
    }
    this.step(rec, t0, 'caught-up', `${to} at head ${target.status?.headSeq}`)
    const epoch = await this.promote(v, target, rec, t0)
    if (epoch === null) throw new BlockrepError('ERR_NOT_PRIMARY', `switchover failed: ${rec.outcome}`)
    const published = await ctl.publish(v, to, epoch)
    this.step(rec, t0, 'published', `epoch ${epoch}`)
    rec.state = 'done'
    rec.epoch = epoch
    rec.outcome = `${to} promoted into epoch ${epoch}`
    return published
  }

  private async promote(v: VolumeRuntime, target: NodeRuntime, rec: FailoverRecord, t0: number): Promise<number | null> {
    const ctl = this.ctl
    const expectEpoch = target.status?.epoch ?? 0
    const sentAtMs = ctl.clock.mono()
    try {
      const r = await target.client.promote({ controller: ctl.id, expectEpoch, lease: { controller: ctl.id, term: ctl.lead?.term ?? 0, leaseMs: ctl.cfg.leaseMs, sentAtMs } }, Math.max(ctl.cfg.timeoutMs, 10_000))
      target.lastGrantSentAt = sentAtMs
      ctl.roleChanged(target, 'primary', r.epoch)
      rec.to = target.cfg.node
      this.step(rec, t0, 'promoted', `${target.cfg.node} primary in epoch ${r.epoch} (expected epoch ${expectEpoch} before)`)
      return r.epoch
    } catch (err) {
      this.fail(rec, `promoting ${target.cfg.node} failed: ${(err as Error).message}`)
      ctl.log.error({ volume: v.cfg.id, node: target.cfg.node, err: (err as Error).message }, 'promotion failed; the next evaluation retries')
      return null
    }
  }

  private choose(v: VolumeRuntime, doc: VolumeDoc, from: string): Choice {
    const ctl = this.ctl
    const sites = ctl.sites()
    const old = v.nodes.get(from) as NodeRuntime
    const primarySite = sites.get(old.cfg.site)
    const candidates: Candidate[] = [...v.nodes.values()].map(n => ({
      node: n.cfg.node, site: n.cfg.site, available: ctl.seen(n), siteAvailable: sites.get(n.cfg.site)?.available ?? false,
      role: n.status?.role ?? null, epoch: n.status?.epoch ?? null, headSeq: n.status?.headSeq ?? null,
      consistent: n.status?.consistent ?? null, noFailover: n.cfg.noFailover,
    }))
    const headSeq = old.status?.headSeq ?? Math.max(-1, ...doc.standbys.map(s => s.ackedSeq))
    return chooseStandby({ failed: { node: from, site: old.cfg.site, headSeq }, primarySiteDown: primarySite !== undefined && !primarySite.available, candidates, maxLagSeqs: ctl.cfg.maxLagSeqs })
  }

  private record(kind: FailoverRecord['kind'], volume: string, from: string, reason: string): FailoverRecord {
    const rec: FailoverRecord = { id: this.nextId++, kind, volume, from, to: null, reason, state: 'running', startedAt: this.ctl.clock.wall(), epoch: null, steps: [], outcome: null }
    this.ctl.failovers.push(rec)
    if (this.ctl.failovers.length > MAX_RECORDS) this.ctl.failovers.shift()
    return rec
  }

  private step(rec: FailoverRecord, t0: number, step: string, detail: string): void {
    rec.steps.push({ step, at: this.ctl.clock.wall(), afterMs: Math.round(this.ctl.clock.mono() - t0), detail })
  }

  private fail(rec: FailoverRecord, why: string): void {
    rec.state = 'failed'
    rec.outcome = why
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise(r => setTimeout(r, Math.max(0, Math.ceil(ms))))
}
