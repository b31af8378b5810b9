/**
 * Leader election across three controller-like processes over one real etcd
 * (test/helpers/etcd-candidate.ts): kill -9 of the leader → another leads
 * within the lease TTL; a leader paused with SIGSTOP past its TTL and then
 * resumed writes nothing more (etcd refuses it: ERR_NOT_LEADER) and stands
 * by again.
 */
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { EtcdCluster, skipWithoutEtcd, stopProcess } from './helpers/etcd.js'
import { waitFor } from './helpers/cluster.js'
import { EtcdStore } from '../src/control/store-etcd.js'

const skip = skipWithoutEtcd()
const helper = fileURLToPath(new URL('./helpers/etcd-candidate.ts', import.meta.url))
const loader = process.execArgv.filter((a) => a.includes('typescript'))
const TTL_MS = 2000

interface Ev {
  ev: string
  id: string
  at: number
  term?: number
  code?: string
  reason?: string
  message?: string
}

class Candidate {
  readonly events: Ev[] = []
  readonly proc: ChildProcess
  constructor(
    readonly id: string,
    url: string,
  ) {
    this.proc = spawn(process.execPath, [...loader, helper, url, id, String(TTL_MS), '100'], { stdio: ['ignore', 'pipe', 'inherit'] })
    let buf = ''
    this.proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        try {
          this.events.push(JSON.parse(line) as Ev)
        } catch {
          // not ours
        }
      }
    })
  }
  after(at: number, ev?: string): Ev[] {
    return this.events.filter((e) => e.at >= at && (ev === undefined || e.ev === ev))
  }
}

t.test('etcd election - three controllers: kill -9 and SIGSTOP of the leader', { skip }, async (t) => {
  const etcd = await EtcdCluster.start()
  t.teardown(() => etcd.stop())
  const url = etcd.url(`/election-${process.pid}/`)
  const cands = ['ctl-1', 'ctl-2', 'ctl-3'].map((id) => new Candidate(id, url))
  t.teardown(() => Promise.all(cands.map((c) => stopProcess(c.proc, 'SIGKILL'))))
  const observer = new EtcdStore({ hosts: etcd.endpoints(), prefix: `/election-${process.pid}/` })
  t.teardown(() => observer.close())

  const leadersSince = (at: number): Candidate[] => cands.filter((c) => c.after(at, 'leading').length > 0)

  await waitFor(() => leadersSince(0).length > 0, 60000, 'a first leader')
  await new Promise((r) => setTimeout(r, 1000))
  t.equal(leadersSince(0).length, 1, 'exactly one leads')
  const first = leadersSince(0)[0]!
  t.same(await observer.leader(), { id: first.id, term: first.events.find((e) => e.ev === 'leading')!.term }, 'etcd names it')
  t.ok(first.after(0, 'write-ok').length > 0, 'and it writes')

  // kill -9 of the leader: its key expires with its lease; another takes it
  const killedAt = Date.now()
  first.proc.kill('SIGKILL')
  await waitFor(() => leadersSince(killedAt).length > 0, 15000, 'a new leader after kill -9')
  const second = leadersSince(killedAt)[0]!
  const took = second.after(killedAt, 'leading')[0]!.at - killedAt
  t.comment(`kill -9 of the leader: ${second.id} leads ${took} ms later (TTL ${TTL_MS} ms)`)
  t.ok(took <= TTL_MS + 2000, `another leads within the TTL plus etcd's expiry check (${took} ms)`)
  t.ok(took >= 500, 'but not before the dead leader\'s lease ran out in etcd')
  t.equal(leadersSince(killedAt).length, 1, 'only one of the two left')

  // SIGSTOP of the new leader past its TTL: the third takes over; resumed, the old one changes nothing
  const stoppedAt = Date.now()
  second.proc.kill('SIGSTOP')
  const third = cands.find((c) => c !== first && c !== second)!
  await waitFor(() => third.after(stoppedAt, 'leading').length > 0, 15000, 'the third to lead while the second is paused')
  const thirdAt = third.after(stoppedAt, 'leading')[0]!.at
  await new Promise((r) => setTimeout(r, 500))
  const resumedAt = Date.now()
  second.proc.kill('SIGCONT')
  await waitFor(() => second.after(resumedAt, 'standby').length > 0, 15000, 'the resumed leader to step down')
  const lost = second.after(resumedAt, 'lost')
  t.equal(lost.length, 1, 'it reports the leadership lost')
  t.comment(`resumed leader: ${lost[0]?.reason}`)
  const afterResume = second.after(resumedAt).filter((e) => e.ev === 'write-ok' || e.ev === 'write-failed')
  t.same(afterResume.filter((e) => e.ev === 'write-ok'), [], 'no write of the resumed leader succeeds')
  t.ok(afterResume.length > 0, 'it tried to write after it resumed')
  t.comment(`its writes after resuming: ${afterResume.map((e) => e.code).join(', ')}`)
  t.ok(afterResume.every((e) => e.code === 'ERR_NOT_LEADER' || e.code === 'ERR_STORE_UNAVAILABLE'), 'its writes fail', { afterResume })
  t.equal(second.after(resumedAt, 'raw-write')[0]?.code, 'ERR_NOT_LEADER', 'even with its local check defeated, etcd refuses its write')
  t.same(second.events.filter((e) => e.ev === 'write-ok' && e.at > thirdAt), [], 'nothing written by the old leader once the new one led')
  const alarms = await observer.alarms()
  const hb = alarms.find((a) => a.id === `hb/${second.id}`)!
  t.ok(hb.raisedAt <= stoppedAt + 100, 'its last heartbeat in etcd predates the pause')
  t.same(await observer.leader(), { id: third.id, term: third.after(stoppedAt, 'leading')[0]!.term }, 'etcd names the third')
  t.equal(third.after(thirdAt, 'lost').length, 0, 'the third keeps leading')
})
