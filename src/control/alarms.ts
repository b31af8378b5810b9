import type { Alarm, AlarmKind } from './store.js'

/** A condition that, while it holds, keeps one alarm raised. */
export interface AlarmCondition {
  kind: AlarmKind
  volume: string | null
  node: string | null
  site: string | null
  message: string
}

export interface AlarmEvent {
  type: 'raised' | 'cleared'
  alarm: Alarm
}

const MAX_HISTORY = 200

/** The key an incident is tracked by: one alarm per key while its condition holds. */
export function alarmKey(c: Pick<AlarmCondition, 'kind' | 'volume' | 'node' | 'site'>): string {
  return `${c.volume ?? '-'}/${c.kind}/${c.node ?? c.site ?? '-'}`
}

/**
 * The alarm state machine: fed the set of conditions that hold at each
 * evaluation, it raises an alarm the first time a condition appears (once per
 * incident, however many evaluations it lasts) and clears it, with the time,
 * when the condition is gone. No I/O: the caller delivers the events.
 */
export class AlarmBook {
  private readonly activeByKey = new Map<string, Alarm>()
  private readonly cleared: Alarm[] = []

  /** `initial`: alarms from the store (the active ones continue their incident). */
  constructor(initial: readonly Alarm[] = []) {
    for (const a of [...initial].sort((x, y) => x.raisedAt - y.raisedAt)) {
      if (a.clearedAt === null) this.activeByKey.set(alarmKey(a), { ...a })
      else this.cleared.push({ ...a })
    }
    this.cleared.splice(0, Math.max(0, this.cleared.length - MAX_HISTORY))
  }

  /**
   * `scope`: the keys this evaluation knows about (null: all). An alarm whose
   * key is outside the scope is left alone, so that a partial evaluation (one
   * volume) does not clear another volume's alarms.
   */
  update(conditions: readonly AlarmCondition[], now: number, scope: ((key: string) => boolean) | null = null): AlarmEvent[] {
    const events: AlarmEvent[] = []
    const holding = new Set<string>()
    for (const c of conditions) {
      const key = alarmKey(c)
      if (holding.has(key)) continue
      holding.add(key)
      if (this.activeByKey.has(key)) continue
      const alarm: Alarm = { id: `${key}/${now}`, kind: c.kind, volume: c.volume, node: c.node, site: c.site, message: c.message, raisedAt: now, clearedAt: null }
      this.activeByKey.set(key, alarm)
      events.push({ type: 'raised', alarm: { ...alarm } })
    }
    for (const [key, alarm] of this.activeByKey) {
      if (holding.has(key) || (scope !== null && !scope(key))) continue
      this.activeByKey.delete(key)
      alarm.clearedAt = now
      this.cleared.push(alarm)
      if (this.cleared.length > MAX_HISTORY) this.cleared.shift()
      events.push({ type: 'cleared', alarm: { ...alarm } })
    }
    return events
  }

  active(): Alarm[] {
    return [...this.activeByKey.values()].map(a => ({ ...a })).sort((a, b) => a.raisedAt - b.raisedAt)
  }

  /** Cleared alarms, oldest first (bounded). */
  history(): Alarm[] {
    return this.cleared.map(a => ({ ...a }))
  }
}
