import t from 'tap'
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { Cluster, CLI, randomWrites, run, waitFor } from './helpers/cluster.js'
import type { NodeStatus, PeerStatus } from '../src/agent/status-types.js'

// The primary's per-peer figures must be true: during a FULL into a
// re-initialised standby, after a primary restart, and `last error` must say
// when it happened and whether it is a current fault (issue 13).

const MiB = 1024 * 1024

function peer(s: NodeStatus, id: string): PeerStatus {
  const p = s.peers.find((x) => x.node === id)
  if (!p) throw new Error(`no peer ${id} in ${s.node}'s status`)
  return p
}

/** `blockrep status --watch` as a child process: its output so far, and its end. */
function watch(adminPort: number): { out: () => string; done: Promise<{ code: number | null; stdout: string; ms: number }> } {
  const started = Date.now()
  let stdout = ''
  const done = new Promise<{ code: number | null; stdout: string; ms: number }>((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'status', '--watch', '--interval', '200', '--admin', `127.0.0.1:${adminPort}`], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, ms: Date.now() - started }))
  })
  return { out: () => stdout, done }
}

t.test('peer figures - a FULL into a re-initialised standby: acked and lag count what is still to send; --watch follows it on the standby', async (t) => {
  // 32 MiB at 4 MiB/s: a resync of about 8 s to look at
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 32 * MiB, tunables: { resyncMaxMiBps: 4 } })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b', 90_000)
  const nbd = await c.nbd()
  await randomWrites(nbd, 32 * MiB, 40)
  await c.waitInSync('b')
  await c.kill('b', 'SIGTERM')
  const b = c.node('b')
  for (const f of [b.data, `${b.data}.meta`, `${b.data}.journal`]) rmSync(f)
  await c.init('b')
  await c.start('b')
  let during: NodeStatus | null = null
  await waitFor(async () => {
    during = await c.status('a')
    const r = peer(during, 'b').resync
    return r !== null && r.blocksDone > 0 && r.blocksDone < r.blocksTotal
  }, 60_000, 'the FULL under way')
  const p = peer(during!, 'b')
  const r = p.resync!
  t.equal(p.state, 'syncing')
  t.equal(p.ackedSeq, 0, 'the re-initialised standby holds nothing yet')
  t.equal(p.lagSeq, during!.headSeq, 'every write is still to reach it')
  t.ok(p.lagBytes >= (r.blocksTotal - r.blocksDone) * 4096, `lag bytes ${p.lagBytes} cover the ${r.blocksTotal - r.blocksDone} blocks left`)
  t.equal(r.frozenSeq, during!.headSeq, 'the round is frozen at the head')
  const onStandby = peer(await c.status('b'), 'a')
  t.equal(onStandby.state, 'syncing', 'the standby sees the resync too')
  t.equal(onStandby.resync?.mode, 'FULL', 'with its progress')

  // --watch on the standby must follow the resync to its end, also across a pause: the primary
  // stops dialing b half-way, the watch starts on the inconsistent standby, then the resync resumes
  await c.admin('a', 'POST', '/disconnect', { peer: 'b' })
  const w = watch(b.adminPort)
  await waitFor(() => /consistent\s+no/.test(w.out()), 60_000, 'the watch showing the inconsistent standby')
  await c.admin('a', 'POST', '/connect', { peer: 'b' })
  const end = await w.done
  t.equal(end.code, 0)
  t.match(end.stdout, /^node\s+b \(standby, epoch 1\)[\s\S]*consistent\s+no/, 'it started on the inconsistent standby')
  t.match(end.stdout, /\nb standby, inconsistent, head \d+; a disconnected/, 'it said the standby waits for its primary')
  t.match(end.stdout, /\n\nnode\s+b \(standby, epoch 1\)[\s\S]*consistent\s+yes/, `then, ${end.ms} ms later, the final status, consistent`)
  const after = await c.waitInSync('b')
  t.equal(peer(after, 'b').lagSeq, 0)
  t.equal(peer(after, 'b').lagBytes, 0)
  await nbd.close()
})

t.test('peer figures - after a primary crash the recorded acked seq is marked unconfirmed until the standby answers', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB, journalSize: 8 * MiB })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  const nbd = await c.nbd()
  await randomWrites(nbd, 8 * MiB, 60)
  await nbd.close()
  const synced = await c.waitInSync('b')
  // the primary's metadata is not rewritten per write: after a crash its acked seq for b is older than b's head
  await c.kill('a')
  await c.kill('b', 'SIGTERM')
  await c.start('a')
  const s = await c.status('a')
  const p = peer(s, 'b')
  t.equal(s.headSeq, synced.headSeq)
  t.ok(p.ackedSeq < s.headSeq, `precondition: the recorded acked seq ${p.ackedSeq} is stale (head ${s.headSeq})`)
  t.equal(p.ackedConfirmed, false, 'marked as not confirmed')
  t.match(p.fault, /ECONNREFUSED/, 'b being down is the current fault')
  const text = (await run(['status', '--admin', `127.0.0.1:${c.node('a').adminPort}`])).stdout
  t.match(text, `acked seq     ${p.ackedSeq} (recorded before this agent started; b has not confirmed it since)`)
  t.match(text, /lag\s+at most \d+ writes, .* \(until b confirms its position\)/)
  t.match(text, /fault\s+connect to 127\.0\.0\.1:\d+ failed: connect ECONNREFUSED .*\(\d+s ago\)/, 'the fault, with its age')
  await c.start('b')
  const back = await c.waitInSync('b')
  const q = peer(back, 'b')
  t.equal(q.ackedConfirmed, true)
  t.equal(q.ackedSeq, back.headSeq)
  t.equal(q.lagSeq, 0)
  t.equal(q.fault, null, 'no current fault once streaming')
  t.match(q.lastError, /ECONNREFUSED/, 'the error stays as history')
  const later = (await run(['status', '--admin', `127.0.0.1:${c.node('a').adminPort}`])).stdout
  t.notMatch(later, /\n\s+fault /)
  t.match(later, /last error\s+connect to .* ECONNREFUSED .*\(\d+s ago, before the link came up\)/)
  t.match(later, /state\s+streaming for \d+s/)
})
