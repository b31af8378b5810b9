/**
 * Spawned by test/etcd-election.test.ts: a controller-like process that
 * campaigns through the etcd store and, while it leads, writes a heartbeat
 * alarm every `writeMs`. Prints one JSON line per event on stdout:
 *   {"ev":"leading","id","term","at"}  {"ev":"write-ok","at"}
 *   {"ev":"write-failed","code","message","at"}  {"ev":"lost","reason","at"}
 *   {"ev":"raw-write","code","at"}   after losing: one write with the local check
 *                                    defeated, to show etcd itself refuses it
 *   {"ev":"standby","at"}            campaigning again
 * argv: URL ID TTL_MS [WRITE_MS]
 */
import { openEtcdStore } from '../../src/control/store-etcd-url.js'
import type { Alarm, Leadership } from '../../src/control/store.js'

const [url, id, ttlArg, writeArg] = process.argv.slice(2)
const ttlMs = Number(ttlArg)
const writeMs = Number(writeArg ?? 200)

function say(ev: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ ev, id, ...fields, at: Date.now() })}\n`)
}

function beat(): Alarm {
  return { id: `hb/${id}`, kind: 'failover', volume: null, node: id!, site: null, message: 'heartbeat', raisedAt: Date.now(), clearedAt: null }
}

const store = await openEtcdStore(url!, { opTimeoutMs: 2000 })
process.on('SIGTERM', () => void store.close().finally(() => process.exit(0)))

for (;;) {
  const lead = await store.campaign(id!, ttlMs)
  say('leading', { term: lead.term })
  lead.onLost((reason) => say('lost', { reason }))
  // write, then look: a process resumed after SIGSTOP makes one more attempt (refused) before it notices
  for (;;) {
    try {
      await store.putAlarm(lead, beat())
      say('write-ok')
    } catch (err) {
      const e = err as { code?: string; message?: string }
      say('write-failed', { code: e.code, message: e.message })
    }
    if (!lead.isHeld()) break
    await new Promise((r) => setTimeout(r, writeMs))
  }
  const believer: Leadership = { id: lead.id, term: lead.term, isHeld: () => true, onLost: () => {}, resign: async () => {} }
  try {
    await store.putAlarm(believer, beat())
    say('raw-write', { code: 'OK' })
  } catch (err) {
    say('raw-write', { code: (err as { code?: string }).code })
  }
  say('standby')
}
