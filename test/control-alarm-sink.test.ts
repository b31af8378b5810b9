import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { AlarmSink } from '../src/control/alarm-sink.js'
import { silentLogger } from '../src/util/log.js'
import { webhookServer } from './helpers/webhook.js'

const alarm = { id: 'vol0/primary-down/a/1', kind: 'primary-down' as const, volume: 'vol0', node: 'a', site: 'east', message: 'primary a down', raisedAt: 1_700_000_000_000, clearedAt: null }

t.test('alarm sink - a command gets the alarm in environment variables and as JSON on stdin, in order', async (t) => {
  const out = join(t.testdir(), 'alarms.txt')
  const sink = new AlarmSink({ command: `cat >> ${out}; echo " $BLOCKREP_ALARM_EVENT $BLOCKREP_ALARM_KIND $BLOCKREP_ALARM_NODE $BLOCKREP_ALARM_CLEARED_AT" >> ${out}` }, silentLogger())
  await sink.deliver([{ type: 'raised', alarm }, { type: 'cleared', alarm: { ...alarm, clearedAt: 1_700_000_001_000 } }])
  const lines = readFileSync(out, 'utf8').trim().split('\n')
  t.equal(lines.length, 2)
  t.match(lines[0], /^\{"event":"raised","alarm":\{"id":"vol0\/primary-down\/a\/1".*\} raised primary-down a $/)
  t.match(lines[1], /"event":"cleared".* cleared primary-down a 2023-11-14T22:13:21.000Z$/)
})

t.test('alarm sink - a webhook gets a JSON POST; an unreachable one is logged, not thrown', async (t) => {
  const hook = await webhookServer(t)
  await new AlarmSink({ webhook: hook.url }, silentLogger()).deliver([{ type: 'raised', alarm }])
  t.same(hook.events, [{ event: 'raised', alarm }])
  await new AlarmSink({ webhook: 'http://127.0.0.1:1/none' }, silentLogger(), 300).deliver([{ type: 'raised', alarm }])
  t.pass('an unreachable webhook does not throw')
})
