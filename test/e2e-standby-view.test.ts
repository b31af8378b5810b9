import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { Cluster, run, waitFor, TOKEN } from './helpers/cluster.js'
import type { PeerStatus } from '../src/agent/status-types.js'

// A standby must say what is wrong with its primary itself: which peers it
// has, the state of each link, and the last refusal it got, in words — in
// `status`, `plan` and its own log (issue 13).

const MiB = 1024 * 1024

function admin(c: Cluster, id: string): string[] {
  return ['--admin', `127.0.0.1:${c.node(id).adminPort}`]
}

async function peerOf(c: Cluster, id: string, peer: string): Promise<PeerStatus> {
  const p = (await c.status(id)).peers.find((x) => x.node === peer)
  if (!p) throw new Error(`${id} shows no peer ${peer}`)
  return p
}

async function waitFault(c: Cluster, id: string, peer: string, re: RegExp, what: string): Promise<PeerStatus> {
  let last: PeerStatus | null = null
  await waitFor(async () => re.test((last = await peerOf(c, id, peer)).fault ?? ''), 30_000, `${what} (last fault: ${last?.fault})`)
  return last!
}

t.test('standby view - a standby whose primary is absent lists it and says it cannot be reached', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 4 * MiB, journalSize: 2 * MiB })
  await c.initAll()
  await c.start('b')
  const p = await waitFault(c, 'b', 'a', /cannot be reached/, 'the nudge to a failing')
  t.equal(p.direction, 'incoming')
  t.equal(p.state, 'disconnected')
  t.equal(p.address, `127.0.0.1:${c.node('a').replPort}`, 'the configured address')
  const status = (await run(['status', ...admin(c, 'b')])).stdout
  t.notMatch(status, 'no peers configured')
  t.match(status, `peer a  127.0.0.1:${c.node('a').replPort}  sync  (a dials this node)`)
  t.match(status, /state\s+disconnected for/)
  t.match(status, /fault\s+a cannot be reached at 127\.0\.0\.1:\d+: connect ECONNREFUSED/)
  const plan = (await run(['plan', ...admin(c, 'b')])).stdout
  t.notMatch(plan, 'no peers configured')
  t.match(plan, /^a\s+UNKNOWN\s+0\s+0 B\s+the primary decides the catch-up; no session now: a cannot be reached/m)
})

t.test('standby view - a wrong shared secret is named on the standby, in status and log', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 4 * MiB, journalSize: 2 * MiB })
  await c.initAll()
  const cfg = JSON.parse(readFileSync(c.node('b').config, 'utf8')) as Record<string, unknown>
  writeFileSync(c.node('b').config, JSON.stringify({ ...cfg, secret: 'another-secret-of-32-bytes-000000' }))
  await c.startAll()
  // the standby's own nudge to a fails authentication first; then a dials it and fails the same way
  await waitFault(c, 'b', 'a', /wrong shared secret/, 'the auth failure on b')
  const p = await waitFault(c, 'b', 'a', /authentication of a failed: wrong shared secret/, "the failed session from a on b")
  t.match(p.lastError, /authentication of a failed: wrong shared secret/)
  t.type(p.lastErrorAt, 'number')
  t.match((await run(['status', ...admin(c, 'b')])).stdout, /fault\s+authentication of a failed: wrong shared secret \(this node's "secret" differs from a's\) \(\d+s ago\)/)
  t.match((await run(['plan', ...admin(c, 'b')])).stdout, /^a\s+REFUSED\s+.*wrong shared secret/m)
  t.match(await c.logOf('b'), /wrong shared secret/, "the standby's own log says it")
})

t.test('standby view - a primary refusing a standby of another size: the standby says why, not "expected MODE"', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB, journalSize: 2 * MiB })
  await c.init('a')
  await run(['init', '--data', c.node('b').data, '--size', String(4 * MiB), '--node', 'b', '--journal-size', String(2 * MiB)])
  await c.startAll()
  const p = await waitFault(c, 'b', 'a', /refused this node/, 'the refusal on b')
  t.match(p.fault, /^a refused this node: REFUSE \(rule 0\): size differs \(primary 8388608, standby 4194304\)/)
  t.match((await run(['status', ...admin(c, 'b')])).stdout, /fault\s+a refused this node: REFUSE \(rule 0\): size differs/)
  t.match((await run(['plan', ...admin(c, 'b')])).stdout, /^a\s+REFUSED\s+.*size differs/m)
  const log = await c.logOf('b')
  t.match(log, /a refused this node: REFUSE \(rule 0\): size differs/, "the standby's log names the refusal")
  t.notMatch(log, /expected MODE, got ERROR/)
})

t.test('standby view - a demoted primary: the standby says it ended the session and now answers as a standby', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 4 * MiB, journalSize: 2 * MiB })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  const live = await peerOf(c, 'b', 'a')
  t.equal(live.state, 'streaming', 'the live session shows on the standby')
  t.equal(live.fault, null)
  t.equal(live.lastMode?.mode, 'FULL')
  await run(['demote', ...admin(c, 'a'), '--token', TOKEN])
  await waitFault(c, 'b', 'a', /a was demoted to standby/, 'the demotion on b')
  const p = await waitFault(c, 'b', 'a', /answers as a standby/, 'the nudge finding a standby')
  t.equal(p.contact?.role, 'standby')
  t.equal(p.lastMode?.mode, 'FULL', 'the last mode stays known')
  const status = (await run(['status', ...admin(c, 'b')])).stdout
  t.match(status, /fault\s+a ended the session: a was demoted to standby and no longer replicates \(ERR_SHUTDOWN\); a answers as a standby: no primary is replicating to this node/)
  t.match(status, /contact\s+answered as standby/)
  t.match(await c.logOf('b'), /a was demoted to standby/)
})
