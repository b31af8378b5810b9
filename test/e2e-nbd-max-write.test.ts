import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { openSync, readSync, closeSync } from 'node:fs'
import { Cluster } from './helpers/cluster.js'
import { have, skipUnless } from './helpers/tools.js'

const pexec = promisify(execFile)
const MiB = 1024 * 1024

function readFileRange(path: string, offset: number, len: number): Buffer {
  const fd = openSync(path, 'r')
  try {
    const b = Buffer.alloc(len)
    readSync(fd, b, 0, len, offset)
    return b
  } finally {
    closeSync(fd)
  }
}

/**
 * Issue 7 §2: with an 8 MiB journal an 8 MiB NBD write failed with EIO while
 * the export advertises a 32 MiB maximum block size. Driven by qemu-io, a
 * real NBD client.
 */
t.test('nbd - writes up to the advertised 32 MiB maximum succeed with an 8 MiB journal', { skip: skipUnless(have('qemu-io'), 'qemu-io') }, async (t) => {
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size: 72 * MiB, journalSize: 8 * MiB })
  await c.initAll()
  await c.start('a')
  await c.start('b')
  await c.waitInSync('b', 60_000)
  const url = `nbd://127.0.0.1:${c.node('a').nbdPort}`
  for (const [off, len, pat] of [[0, 8, '0x5a'], [8, 32, '0xa5'], [40, 32, '0x3c']] as const) {
    const r = await pexec('qemu-io', ['-f', 'raw', url, '-c', `write -P ${pat} ${off}M ${len}M`], { maxBuffer: 4 * MiB }).catch((e: { stdout?: string; stderr?: string; code?: number }) => e)
    t.notOk(/error|failed/i.test(`${r.stdout}${r.stderr}`), `qemu-io write ${len} MiB at ${off} MiB succeeds (${(r.stdout ?? '').trim().split('\n')[0]}${(r.stderr ?? '').trim()})`)
  }
  const check = await pexec('qemu-io', ['-f', 'raw', url, '-c', 'read -P 0x5a 0 8M', '-c', 'read -P 0xa5 8M 32M', '-c', 'read -P 0x3c 40M 32M'], { maxBuffer: 4 * MiB })
  t.notOk(/fail|error|mismatch/i.test(check.stdout + check.stderr), 'the primary reads back what was written')
  await c.waitInSync('b', 30_000)
  t.ok(readFileRange(c.node('b').data, 40 * MiB, 32 * MiB).equals(Buffer.alloc(32 * MiB, 0x3c)), 'the standby holds the last 32 MiB write')
  t.equal(await c.sha('b'), await c.sha('a'), 'volumes identical')
})
