import t from 'tap'
import { have, skipUnless } from './helpers/tools.js'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Cluster, sha256File } from './helpers/cluster.js'

const pexec = promisify(execFile)
const MiB = 1024 * 1024

const missing = ['qemu-io', 'qemu-img', 'nbdinfo', 'nbdcopy'].filter((b) => !have(b))
const skip = skipUnless(missing.length === 0, `${missing.join(', ')} (apt-get install qemu-utils libnbd-bin)`)

t.test('nbd export - real clients write through the primary and the standby ends byte-identical', { skip }, async (t) => {
  const size = 32 * MiB
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size, journalSize: 16 * MiB })
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  const url = `nbd://127.0.0.1:${c.node('a').nbdPort}`
  const dir = t.testdir()

  // qemu-img convert a whole random image in
  const src = join(dir, 'src.img')
  writeFileSync(src, randomBytes(size))
  await pexec('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, url], { timeout: 120_000 })
  await c.waitInSync('b')
  const srcSha = await sha256File(src)
  t.equal(await c.sha('a'), srcSha, "the primary's data file is the image qemu-img wrote")
  t.equal(await c.sha('b'), srcSha, "the standby's data file is byte-identical to what the client wrote")

  // qemu-io patterns, unaligned, FUA, zeroes; read back through NBD
  const io = await pexec('qemu-io', ['-f', 'raw', url,
    '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M',
    '-c', 'write -P 0x5c 1234567 70000', '-c', 'read -P 0x5c 1234567 70000',
    '-c', 'write -f -P 0x11 4M 64k', '-c', 'flush',
    '-c', 'write -z 8M 2M', '-c', 'read -P 0 8M 2M'], { timeout: 60_000 })
  t.notMatch(io.stdout + io.stderr, /Pattern verification failed|error/i, 'qemu-io read back every pattern it wrote')
  await c.waitInSync('b')
  t.equal(await c.sha('b'), await c.sha('a'), 'standby identical after qemu-io writes')

  // nbdinfo: size and flags of the primary (read-write) and of the standby (read-only)
  const info = JSON.parse((await pexec('nbdinfo', ['--json', url])).stdout)
  const exp = info.exports[0]
  t.equal(exp['export-size'], size, 'nbdinfo reports the size')
  t.equal(exp['is_read_only'], false, 'the primary export is writable')
  for (const f of ['can_flush', 'can_fua', 'can_trim', 'can_zero']) t.equal(exp[f], true, `nbdinfo: ${f}`)
  const sinfo = JSON.parse((await pexec('nbdinfo', ['--json', `nbd://127.0.0.1:${c.node('b').nbdPort}`])).stdout)
  t.equal(sinfo.exports[0]['is_read_only'], true, 'the standby export is read-only')

  // nbdcopy and qemu-img convert out
  const out1 = join(dir, 'out1.img')
  await pexec('nbdcopy', [url, out1], { timeout: 120_000 })
  t.equal(await sha256File(out1), await c.sha('a'), 'nbdcopy copies the volume out')
  const out2 = join(dir, 'out2.img')
  await pexec('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url, out2], { timeout: 120_000 })
  t.equal(await sha256File(out2), await c.sha('a'), 'qemu-img convert copies the volume out')

  // a write to the standby is refused
  const refused = await pexec('qemu-io', ['-f', 'raw', `nbd://127.0.0.1:${c.node('b').nbdPort}`, '-c', 'write -P 1 0 4k']).then(
    (r) => r.stdout + r.stderr,
    (e: { stdout: string; stderr: string }) => e.stdout + e.stderr,
  )
  t.match(refused, /Permission denied|read-only|EPERM/i, 'the standby refuses client writes')
})
