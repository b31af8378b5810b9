import { spawn } from 'node:child_process'
import type { Logger } from '../util/log.js'
import type { AlarmTarget } from './config.js'
import type { AlarmEvent } from './alarms.js'

/**
 * Delivers alarm events: always to the log, then to the configured webhook
 * (POST of `{event, alarm}` as JSON, retried a few times) or command (run by
 * /bin/sh with BLOCKREP_ALARM_* variables and the same JSON on stdin).
 * Delivery failures are logged, never thrown: an alarm must not stop the loop.
 */
export class AlarmSink {
  private chain: Promise<void> = Promise.resolve()

  constructor(
    private readonly target: AlarmTarget,
    private readonly log: Logger,
    private readonly timeoutMs = 5000,
  ) {}

  /** Queues the events in order; resolves when these are delivered (or given up). */
  deliver(events: readonly AlarmEvent[]): Promise<void> {
    for (const ev of events) {
      const a = ev.alarm
      const fields = { alarm: a.id, kind: a.kind, volume: a.volume, node: a.node, site: a.site }
      if (ev.type === 'raised') this.log.warn(fields, `alarm raised: ${a.message}`)
      else this.log.info({ ...fields, durationMs: (a.clearedAt ?? a.raisedAt) - a.raisedAt }, `alarm cleared: ${a.message}`)
      this.chain = this.chain.then(() => this.send(ev)).catch(() => {})
    }
    return this.chain
  }

  private async send(ev: AlarmEvent): Promise<void> {
    const t = this.target
    if (t === null) return
    const body = JSON.stringify({ event: ev.type, alarm: ev.alarm })
    if ('webhook' in t) {
      for (let attempt = 1; attempt <= 3; attempt++) {
        try {
          const res = await fetch(t.webhook, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(this.timeoutMs) })
          await res.arrayBuffer().catch(() => null)
          if (res.ok) return
          this.log.warn({ alarm: ev.alarm.id, status: res.status, attempt }, 'alarm webhook refused the alarm')
        } catch (err) {
          this.log.warn({ alarm: ev.alarm.id, err: (err as Error).message, attempt }, 'alarm webhook unreachable')
        }
        await new Promise(r => setTimeout(r, 200 * attempt))
      }
      return
    }
    await this.runCommand(t.command, ev, body)
  }

  private runCommand(command: string, ev: AlarmEvent, body: string): Promise<void> {
    const a = ev.alarm
    const env = {
      ...process.env,
      BLOCKREP_ALARM_EVENT: ev.type,
      BLOCKREP_ALARM_ID: a.id,
      BLOCKREP_ALARM_KIND: a.kind,
      BLOCKREP_ALARM_VOLUME: a.volume ?? '',
      BLOCKREP_ALARM_NODE: a.node ?? '',
      BLOCKREP_ALARM_SITE: a.site ?? '',
      BLOCKREP_ALARM_MESSAGE: a.message,
      BLOCKREP_ALARM_RAISED_AT: new Date(a.raisedAt).toISOString(),
      BLOCKREP_ALARM_CLEARED_AT: a.clearedAt === null ? '' : new Date(a.clearedAt).toISOString(),
    }
    return new Promise(resolve => {
      const child = spawn('/bin/sh', ['-c', command], { env, stdio: ['pipe', 'ignore', 'pipe'] })
      let stderr = ''
      child.stderr.on('data', d => (stderr = (stderr + String(d)).slice(-2000)))
      const timer = setTimeout(() => child.kill('SIGKILL'), this.timeoutMs * 2)
      child.on('error', err => {
        clearTimeout(timer)
        this.log.warn({ alarm: a.id, err: err.message }, 'alarm command could not start')
        resolve()
      })
      child.on('exit', (code, signal) => {
        clearTimeout(timer)
        if (code !== 0) this.log.warn({ alarm: a.id, code, signal, stderr }, 'alarm command failed')
        resolve()
      })
      child.stdin.on('error', () => {})
      child.stdin.end(body)
    })
  }
}
