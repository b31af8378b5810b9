import t from 'tap'
import { spawn } from 'node:child_process'
import { openSync, writeSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, Cluster, TOKEN, randomWrites, run } from './helpers/cluster.js'
import type { Teardown } from '../src/demo/local-cluster.js'

const MiB = 1024 * 1024

/** Runs the CLI and returns its exit code and output instead of throwing. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(args)
    return { code: 0, ...r }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

t.test('cli - init argument errors name what was wrong and exit 2', async (t) => {
  const dir = t.testdir()
  const data = join(dir, 'v.img')
  const cases: [string[], RegExp][] = [
    [['--size', '12Q', '--node', 'a'], /--size/],
    [['--size', '1000', '--node', 'a'], /multiple of the 4096-byte block size/],
    [['--size', '4M', '--node', 'a', '--block-size', '3000'], /--block-size/],
    [['--size', '4M', '--node', 'a b'], /--node/],
    [['--size', '4M', '--node', 'a', '--volume-id', 'nope'], /--volume-id/],
    [['--size', '4M', '--node', 'a', '--journal-size', '4K'], /--journal-size/],
    [['--node', 'a'], /--size/],
  ]
  for (const [args, why] of cases) {
    const r = await cli(['init', '--data', data, ...args])
    t.equal(r.code, 2, `exit 2 for ${args.join(' ')}`)
    t.match(r.stderr, why, `names the problem: ${r.stderr.split('\n')[0]}`)
  }
  const ok = await cli(['init', '--data', data, '--size', '4M', '--node', 'a', '--role', 'primary', '--journal-size', '2M'])
  t.equal(ok.code, 0, 'a valid init succeeds')
  const again = await cli(['init', '--data', data, '--size', '8M', '--node', 'a'])
  t.equal(again.code, 1, 're-init with another size is refused')
  t.match(again.stderr, /size/, again.stderr.split('\n')[0])
})

t.test('agent - two agents on the same data file: the second is refused naming the holder', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a'], size: 4 * MiB, journalSize: 2 * MiB })
  await c.initAll()
  await c.start('a')
  const holder = c.node('a').proc!.pid
  const second = spawn(process.execPath, [CLI, 'agent', '--config', c.node('a').config], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  second.stderr.on('data', (d) => (stderr += d))
  const code = await new Promise<number | null>((r) => second.on('exit', r))
  t.equal(code, 1, 'the second agent exits 1')
  t.match(stderr, /ERR_LOCK_HELD/, 'with ERR_LOCK_HELD')
  t.match(stderr, new RegExp(`pid ${holder}`), `naming the holder pid ${holder}`)
  const before = await c.status('a')
  t.equal(before.role, 'primary', 'the first agent is still the primary')
  const nbd = await c.nbd('a')
  const data = Buffer.alloc(4096, 0x5c)
  await nbd.write(8192, data)
  t.same(await nbd.read(8192, 4096), data, 'the first agent keeps serving: a write reads back')
  t.equal((await c.status('a')).headSeq, before.headSeq + 1, 'and took a seq')
  await nbd.close()
})

t.test('agent - status and plan JSON carry the fields operators rely on; verify finds a corrupted block', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB, journalSize: 2 * MiB })
  await c.initAll()
  await c.startAll()
  const nbd = await c.nbd('a')
  await randomWrites(nbd, 8 * MiB, 100)
  await c.waitInSync('b')
  const admin = ['--admin', `127.0.0.1:${c.node('a').adminPort}`, '--token', TOKEN]
  const st = JSON.parse((await run(['status', ...admin, '--json'])).stdout)
  for (const k of ['node', 'role', 'epoch', 'headSeq', 'consistent', 'journal', 'peers']) t.ok(k in st, `status has ${k}`)
  const p = st.peers[0]
  for (const k of ['state', 'lastMode', 'ackedSeq', 'lagBytes', 'resync']) t.ok(k in p, `peer status has ${k}`)
  t.equal(p.state, 'streaming')
  t.equal(p.lastMode.mode, 'FULL')
  t.match(p.lastMode.reason, /rule 1/)
  const text = (await run(['status', ...admin])).stdout
  t.match(text, /streaming/, 'human status shows the peer state')
  const plan = JSON.parse((await run(['plan', ...admin, '--json'])).stdout)
  t.ok(Array.isArray(plan) && plan.length === 1, 'plan --json is an array with one entry per peer')
  const entry = plan[0]
  t.match(entry, { node: 'b', mode: 'NONE', blocks: 0, bytes: 0, reason: /rule 3/ }, `plan: an in-sync peer needs NONE, nothing to move (${entry.reason})`)

  const metrics = await (await fetch(`http://127.0.0.1:${c.node('a').adminPort}/metrics`)).text()
  const count = Number(/^blockrep_write_latency_seconds_count(?:\{[^}]*\})? (\d+)/m.exec(metrics)?.[1] ?? 0)
  t.ok(count >= 100, `write latency histogram counted ${count} writes`)
  t.match(metrics, /blockrep_peer_acked_seq\{[^}]*peer="b"[^}]*\} \d+/, 'per-peer acked seq')
  t.match(metrics, /blockrep_peer_lag_bytes\{[^}]*peer="b"/, 'per-peer lag')
  t.match(metrics, /blockrep_modes_chosen_total\{[^}]*mode="FULL"[^}]*\} 1/, 'modes chosen')
  t.match(metrics, /blockrep_head_seq\{[^}]*\} \d+/, 'head seq')

  const clean = await cli(['verify', ...admin, '--peer', 'b', '--json'])
  t.equal(clean.code, 0, 'verify of identical volumes exits 0')
  t.match(clean.stdout, /"differingBlocks":\s*\[\]/)
  // silently corrupt one block on the standby behind the agent's back
  const fd = openSync(c.node('b').data, 'r+')
  writeSync(fd, Buffer.alloc(4096, 0xee), 0, 4096, 77 * 4096)
  closeSync(fd)
  const bad = await cli(['verify', ...admin, '--peer', 'b', '--json'])
  t.equal(bad.code, 1, 'verify with a difference exits 1')
  t.match(bad.stdout, /"differingBlocks":\s*\[\s*77\s*\]/, 'and names block 77')
  await nbd.close()
})

/**
 * a and b in sync after `shared` writes; then a accepts `unshipped` writes b never gets, a's machine
 * room fails (SIGKILL), b is promoted and takes `afterPromotion` writes; a's agent is started again.
 */
async function failover(t: Teardown, shared: number, unshipped: number, afterPromotion: number) {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 8 * MiB, journalSize: 2 * MiB })
  await c.initAll()
  await c.startAll()
  const nbdA = await c.nbd('a')
  await randomWrites(nbdA, 8 * MiB, shared, 4096, 8, 1)
  await c.waitInSync('b')
  await c.admin('a', 'POST', '/disconnect', { peer: 'b' })
  await randomWrites(nbdA, 8 * MiB, unshipped, 4096, 8, 2)
  await nbdA.close()
  await c.kill('a')
  const promoted = (await c.admin('b', 'POST', '/promote', { force: false })) as { epoch: number }
  const nbdB = await c.nbd('b')
  await randomWrites(nbdB, 8 * MiB, afterPromotion, 4096, 8, 3)
  await c.start('a')
  return { c, nbdB, promoted }
}

t.test('agent - failover: the standby is promoted, the old primary rejoins and its unshipped writes are reported', async (t) => {
  // a keeps accepting writes that never reach b, then its machine room fails; the old primary comes
  // back, is demoted by the operator, and b catches it up
  const { c, nbdB, promoted } = await failover(t, 100, 30, 40)
  t.equal(promoted.epoch, 2, 'b starts epoch 2')
  await c.admin('a', 'POST', '/demote')
  const st = await c.waitInSync('a', 30_000, 'b')
  const mode = st.peers.find((p) => p.node === 'a')!.lastMode!
  t.equal(mode.mode, 'BITMAP', `divergence handled incrementally: ${mode.reason}`)
  t.match(mode.reason, /diverg/i, 'reported as a divergence')
  t.equal(await c.sha('a'), await c.sha('b'), 'the old primary now equals the new one')
  const log = await c.logOf('a')
  t.match(log, /diverged writes/, 'the old primary logged the writes it loses')
  const { readdirSync } = await import('node:fs')
  const kept = readdirSync(c.dir).filter((f) => f.startsWith('a.img.diverged-'))
  t.ok(kept.some((f) => f.endsWith('.json')) && kept.some((f) => f.endsWith('.bin')), `the diverged writes were kept for the operator: ${kept.join(', ')}`)
  await nbdB.close()
})

t.test('agent - an old primary whose head is above the new primary\'s rejoins, then keeps streaming', async (t) => {
  // many unshipped writes on a, few on the new primary b: a's head ends above b's
  const { c, nbdB } = await failover(t, 50, 80, 10)
  t.ok((await c.status('a')).headSeq > (await c.status('b')).headSeq, 'the old primary\'s head is above the new primary\'s')
  await c.admin('a', 'POST', '/demote')
  let st = await c.waitInSync('a', 30_000, 'b')
  t.equal(st.peers.find((p) => p.node === 'a')!.lastMode!.mode, 'BITMAP')
  // the rejoined standby keeps acknowledging new writes as they stream
  await randomWrites(nbdB, 8 * MiB, 200, 4096, 8, 4)
  st = await c.waitInSync('a', 30_000, 'b')
  t.equal(st.peers.find((p) => p.node === 'a')!.state, 'streaming')
  t.equal(await c.sha('a'), await c.sha('b'), 'identical')
  t.notMatch(await c.logOf('b'), /acknowledged seq \d+ beyond head/, 'no acknowledgement beyond the primary\'s head')
  await nbdB.close()
})
