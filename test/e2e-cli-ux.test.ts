import t from 'tap'
import { rmSync } from 'node:fs'
import { Cluster, run, TOKEN } from './helpers/cluster.js'

// What a newcomer meets on the command line against real agents (issue 13):
// no-op promote/demote, verify on a standby, the wrong port, the config's
// role against the metadata, init re-run, a volume never initialised, logs.

const MiB = 1024 * 1024

/** Runs the CLI; a non-zero exit resolves too, with its code. */
async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(args, { env })
    return { code: 0, ...r }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

t.test('cli ux - against a running pair: no-op promote/demote, verify on the standby, the wrong port, role and logs', async (t) => {
  // b's config says primary, but b is initialised as a standby: the metadata decides, and b says so
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 4 * MiB, journalSize: 2 * MiB, extra: { b: { role: 'primary' } } })
  await c.initAll()
  await c.start('a')
  process.env.BLOCKREP_LOG_FORMAT = 'pretty'
  try {
    await c.start('b')
  } finally {
    delete process.env.BLOCKREP_LOG_FORMAT
  }
  await c.waitInSync('b')
  const A = ['--admin', `127.0.0.1:${c.node('a').adminPort}`, '--token', TOKEN]
  const B = ['--admin', `127.0.0.1:${c.node('b').adminPort}`, '--token', TOKEN]

  const [promote, demote, verify, nbdPort, replPort, statusB] = await Promise.all([
    cli(['promote', ...A]),
    cli(['demote', ...B]),
    cli(['verify', '--peer', 'a', ...B]),
    cli(['status', '--admin', `127.0.0.1:${c.node('a').nbdPort}`]),
    cli(['status', '--admin', `127.0.0.1:${c.node('a').replPort}`, '--timeout', '20000']),
    cli(['status', '--admin', `127.0.0.1:${c.node('b').adminPort}`]),
  ])
  t.equal(promote.code, 0)
  t.equal(promote.stdout, 'already primary (epoch 1): nothing changed\n')
  t.equal(demote.code, 0)
  t.equal(demote.stdout, 'already a standby: nothing changed\n')
  t.equal((await c.status('a')).epoch, 1, 'no new epoch')
  t.equal((await c.status('b')).role, 'standby')

  t.equal(verify.code, 1)
  t.match(verify.stderr, 'ERR_NOT_PRIMARY: b is a standby: the primary drives the link (a is replicating to b now); run this command against the primary\'s admin API, with --peer b')
  t.notMatch(verify.stderr, 'no replication link')

  t.equal(nbdPort.code, 1)
  t.match(nbdPort.stderr, `ERR_PROTOCOL: 127.0.0.1:${c.node('a').nbdPort} does not speak the admin API: it is an NBD export`)
  t.notMatch(nbdPort.stderr, 'Parse Error')
  t.equal(replPort.code, 1)
  t.match(replPort.stderr, `127.0.0.1:${c.node('a').replPort} does not speak the admin API`)
  t.notMatch(replPort.stderr, 'Parse Error')

  const warning = /the config says role primary but the volume's metadata says standby: started as standby/
  t.match(statusB.stdout, /warning\s+the config says role primary/)
  t.match((await c.status('b')).warnings?.[0], warning)
  t.same((await c.status('a')).warnings, [], 'no warning where config and metadata agree')

  // logs: a (stderr not a terminal) writes JSON; b was started with BLOCKREP_LOG_FORMAT=pretty
  const nbd = await c.nbd('a')
  await nbd.write(0, Buffer.alloc(4096, 1))
  await nbd.close()
  const logA = (await c.logOf('a')).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
  const started = logA.find((l) => l.msg === 'agent started')
  t.equal(started?.replication, `127.0.0.1:${c.node('a').replPort}`, 'the replication address with its host')
  t.notOk(logA.some((l) => l.level === 30 && /^nbd: (transmission|connection)/.test(String(l.msg))), 'no info line per NBD connection')
  const logB = await c.logOf('b')
  t.match(logB, /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: b: the config says role primary/m, 'pretty lines on b, the role warning among them')
  t.match(logB, /INFO: b: agent started \{"role":"standby","replication":"127\.0\.0\.1:\d+"/)
  t.notMatch(logB, /^\{"level"/m, 'no JSON on b')
})

t.test('cli ux - init re-run says what it left unchanged; an agent without metadata says run blockrep init', async (t) => {
  const c = await Cluster.create(t, { nodes: ['a'], size: 4 * MiB, journalSize: 2 * MiB })
  const a = c.node('a')
  await c.init('a')
  const again = await cli(['init', '--data', a.data, '--size', String(4 * MiB), '--node', 'a', '--role', 'standby', '--journal-size', '8M'])
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, `already initialised: ${a.data}.meta exists and matches --size, --block-size and --node; nothing was created or changed`)
  t.match(again.stdout, 'not changed: role stays primary (--role standby ignored: init sets the role of a new volume only; use `blockrep demote` on the running agent)')
  t.match(again.stdout, /not changed: journal stays 2\.0\d MiB \(--journal-size 8\.00 MiB ignored/)
  t.match(again.stdout, 'role primary')
  const same = await cli(['init', '--data', a.data, '--size', String(4 * MiB), '--node', 'a'])
  t.notMatch(same.stdout, 'not changed', 'defaults left alone are not reported')

  rmSync(`${a.data}.meta`)
  const start = await cli(['agent', '--config', a.config])
  t.equal(start.code, 1)
  t.match(start.stderr, `ERR_CONFIG: no metadata file ${a.data}.meta: the data file ${a.data} exists but this node's volume was never initialised; run \`blockrep init --data ${a.data} --size SIZE --node a --role primary\` first`)
})
