import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { AdminServer } from '../src/agent/admin-server.js'
import { BlockrepError } from '../src/util/errors.js'
import type { AdminTarget, NodeStatus, ProgressFigures } from '../src/agent/status-types.js'

const ROOT = join(import.meta.dirname, '..')
const MAIN = join(ROOT, 'dist/src/cli/main.js')
const TOKEN = 'cli-test-token'

// The CLI runs from dist/, built once before the suite (`npm test` runs tsc as its pretest). This
// file must not rebuild it: other test files run dist/ in parallel, and a build here rewrote it
// under them (and ignored tsc's exit code). A missing or stale build is an error, not a retry.
if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first with \`npx tsc -p .\``)
const stale = newestSource(join(ROOT, 'src'))
if (stale && stale.mtimeMs > statSync(MAIN).mtimeMs) {
  throw new Error(`dist/ is older than ${stale.file}: rebuild with \`npx tsc -p .\` before running the CLI tests`)
}

/** The most recently modified .ts file under `dir`. */
function newestSource(dir: string): { file: string; mtimeMs: number } | null {
  let best: { file: string; mtimeMs: number } | null = null
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !e.name.endsWith('.ts')) continue
    const file = join(e.parentPath, e.name)
    const m = statSync(file).mtimeMs
    if (!best || m > best.mtimeMs) best = { file, mtimeMs: m }
  }
  return best
}

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.on('error', reject)
    child.on('close', code => resolve({ code, stdout, stderr }))
  })
}

const now = Date.now()
function status(): NodeStatus {
  return {
    node: 'a', volumeId: '0f8fad5b-d9cb-469f-a165-70867728950e', role: 'primary', epoch: 3, headSeq: 1042, consistent: true,
    size: 2 ** 30, blockSize: 4096,
    journal: { tailSeq: 12, headSeq: 1042, capacity: 256 * 2 ** 20, used: 3 * 2 ** 20 },
    peers: [
      {
        node: 'b', address: '127.0.0.1:7802', protocol: 'sync', state: 'streaming',
        lastMode: { mode: 'HEAD_DELTA', reason: 'journal holds every record after the standby head', blocks: 42, bytes: 172032, at: now - 60_000 },
        ackedSeq: 1040, lagSeq: 2, lagBytes: 8192, bitmapBlocks: 0, resync: null, lastError: null, bytesSent: 10_485_760,
      },
      {
        node: 'c', address: '127.0.0.1:7803', protocol: 'async', state: 'syncing',
        lastMode: { mode: 'BITMAP', reason: 'journal wrapped; dirty bitmap valid', blocks: 1203, bytes: 1203 * 4096, at: now - 5000 },
        ackedSeq: 900, lagSeq: 142, lagBytes: 581632, bitmapBlocks: 1203,
        resync: { mode: 'BITMAP', round: 2, blocksTotal: 1203, blocksDone: 600, bytesDone: 600 * 4096, startedAt: now - 2000, rateBytesPerSec: 1228800, etaSeconds: 2 },
        lastError: 'connection reset by peer',
        bytesSent: 2_457_600,
      },
    ],
    nbd: { address: '127.0.0.1:10809', readOnly: false, connections: 1 },
    upSince: now - 3_723_000,
  }
}

let verifyProgress: ProgressFigures | null = null
const target: AdminTarget = {
  status,
  plan: async () => [
    { node: 'b', mode: 'NONE', reason: 'heads equal', blocks: 0, bytes: 0 },
    { node: 'c', mode: 'BITMAP', reason: 'journal wrapped; dirty bitmap valid', blocks: 603, bytes: 603 * 4096 },
  ],
  promote: async force => {
    if (!force) throw new BlockrepError('ERR_NOT_PRIMARY', 'peer b is still primary')
    return { epoch: 4 }
  },
  demote: async () => {},
  verify: async peer => {
    if (peer !== 'b') throw new BlockrepError('ERR_USAGE', `unknown peer "${peer}"`)
    const startedAt = Date.now()
    for (let done = 0; done <= 1000; done += 250) {
      verifyProgress = { blocksTotal: 1000, blocksDone: done, bytesDone: done * 4096, startedAt, rateBytesPerSec: 0, etaSeconds: null }
      await new Promise(r => setTimeout(r, 60))
    }
    verifyProgress = null
    return { peer, blocksCompared: 1000, differingBlocks: [7, 8, 9, 500], seconds: 0.3 }
  },
  verifyProgress: () => verifyProgress,
  connect: async () => {},
  disconnect: async () => {},
}

const server = new AdminServer({ target, token: TOKEN, port: 0 })
const { port } = await server.listen()
t.teardown(() => server.close())
const ADMIN = `127.0.0.1:${port}`

t.test('cli - --help exits 0 everywhere', async t => {
  const top = await cli(['--help'])
  t.equal(top.code, 0)
  t.match(top.stdout, 'Usage: blockrep')
  for (const c of ['init', 'agent', 'status', 'plan', 'promote', 'demote', 'verify', 'connect', 'disconnect', 'demo']) t.match(top.stdout, new RegExp(`\\n  ${c} `), c)
  const cmds = ['init', 'agent', 'status', 'plan', 'promote', 'demote', 'verify', 'connect', 'disconnect', 'demo']
  const runs = await Promise.all(cmds.map(c => cli([c, '--help'])))
  cmds.forEach((c, i) => {
    t.equal(runs[i]?.code, 0, `${c} --help`)
    t.match(runs[i]?.stdout, `Usage: blockrep ${c}`)
  })
  const init = runs[0] as Run
  for (const o of ['--data', '--size', '--node', '--meta', '--block-size', '--journal-size', '--volume-id', '--role']) t.match(init.stdout, o)
  t.match((await cli(['status', '--help'])).stdout, '--admin <host:port>')
  t.equal((await cli(['--version'])).code, 0)
})

t.test('cli - usage errors exit 2 with a clear message', async t => {
  const [bogus, cmd, none, missing, addr, role, conflict] = await Promise.all([
    cli(['status', '--bogus']),
    cli(['frobnicate']),
    cli([]),
    cli(['verify', '--admin', ADMIN]),
    cli(['status', '--admin', 'nowhere']),
    cli(['init', '--data', 'x', '--size', '1G', '--node', 'a', '--role', 'boss']),
    cli(['status', '--json', '--watch']),
  ]) as Run[]
  t.equal(bogus?.code, 2)
  t.match(bogus?.stderr, "blockrep: error: unknown option '--bogus'")
  t.match(bogus?.stderr, '--help')
  t.equal(cmd?.code, 2)
  t.match(cmd?.stderr, "unknown command 'frobnicate'")
  t.equal(none?.code, 2, 'no command')
  t.equal(missing?.code, 2)
  t.match(missing?.stderr, "required option '--peer <id>' not specified")
  t.equal(addr?.code, 2)
  t.match(addr?.stderr, 'blockrep: ERR_USAGE: --admin: expected "host:port"')
  t.equal(role?.code, 2)
  t.equal(conflict?.code, 2)
})

t.test('cli - status prints the node figures and a table per peer', async t => {
  const r = await cli(['status', '--admin', ADMIN])
  t.equal(r.code, 0, r.stderr)
  for (const s of [
    'a (primary, epoch 3)', 'head seq', '1042', 'consistent  yes', 'seq 12..1042', /up\s+1h0\dm/,
    'peer b  127.0.0.1:7802  sync', 'state         streaming', /HEAD_DELTA, 42 blocks, 168 KiB, \d+m\d\ds ago/, 'journal holds every record after the standby head', 'acked seq     1040', '2 writes, 8.00 KiB', 'sent          10.0 MiB',
    'peer c  127.0.0.1:7803  async', 'syncing (BITMAP round 2)', 'BITMAP round 2: 600/1203 blocks (49.9%), 2.34 MiB at 1.17 MiB/s, ETA 2s',
    'last error    connection reset by peer',
  ]) t.match(r.stdout, s, String(s))
})

t.test('cli - status --json parses to the agent status', async t => {
  const r = await cli(['status', '--json'], { BLOCKREP_ADMIN: ADMIN })
  t.equal(r.code, 0, r.stderr)
  const s = JSON.parse(r.stdout) as NodeStatus
  t.same(s, status())
  t.equal(s.peers[1]?.resync?.etaSeconds, 2)
})

t.test('cli - plan', async t => {
  const r = await cli(['plan', '--admin', ADMIN])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /PEER\s+MODE\s+BLOCKS\s+BYTES\s+REASON/)
  t.match(r.stdout, /c\s+BITMAP\s+603\s+2\.36 MiB\s+journal wrapped/)
  t.same(JSON.parse((await cli(['plan', '--admin', ADMIN, '--json'])).stdout)[1].mode, 'BITMAP')
})

t.test('cli - promote needs the token; errors exit 1 with their code', async t => {
  const noToken = await cli(['promote', '--force', '--admin', ADMIN])
  t.equal(noToken.code, 1)
  t.match(noToken.stderr, 'blockrep: ERR_AUTH_FAILED: missing "Authorization: Bearer <token>"')
  const ok = await cli(['promote', '--force', '--admin', ADMIN], { BLOCKREP_TOKEN: TOKEN })
  t.equal(ok.code, 0, ok.stderr)
  t.equal(ok.stdout, 'promoted: primary in epoch 4\n')
  const refused = await cli(['promote', '--admin', ADMIN, '--token', TOKEN])
  t.equal(refused.code, 1)
  t.match(refused.stderr, 'blockrep: ERR_NOT_PRIMARY: peer b is still primary')
  t.equal((await cli(['demote', '--admin', ADMIN, '--token', TOKEN])).stdout, 'demoted: standby\n')
  t.equal((await cli(['connect', '--peer', 'b', '--admin', ADMIN, '--token', TOKEN])).code, 0)
  t.equal((await cli(['disconnect', '--peer', 'b', '--admin', ADMIN, '--token', TOKEN])).code, 0)
})

t.test('cli - verify shows progress, then the differing blocks (exit 1)', async t => {
  const r = await cli(['verify', '--peer', 'b', '--interval', '50', '--admin', ADMIN, '--token', TOKEN])
  t.equal(r.code, 1, r.stderr)
  t.match(r.stdout, 'verify b: 1000 blocks compared in 0s, 4 differing blocks\n  7-9, 500\n')
  t.match(r.stderr, /verify b: \d+\/1000 blocks/)
  const unknown = await cli(['verify', '--peer', 'x', '--admin', ADMIN, '--token', TOKEN])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, 'ERR_USAGE: unknown peer "x"')
})

t.test('cli - unreachable agent exits 1 with ERR_IO', async t => {
  const r = await cli(['status', '--admin', '127.0.0.1:1'])
  t.equal(r.code, 1)
  t.match(r.stderr, 'blockrep: ERR_IO: cannot reach the admin API at 127.0.0.1:1')
})
