import t from 'tap'
import { skipUnless } from './helpers/tools.js'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, openSync, writeSync, closeSync, rmSync, statfsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, run } from './helpers/cluster.js'
import { VolumeModel } from './helpers/volume-model.js'

const MiB = 1024 * 1024

/** Whether this process may mount a tmpfs (root, outside a restricted container). */
function canMount(): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'blockrep-mount-probe-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'ignore' })
    execFileSync('umount', [dir], { stdio: 'ignore' })
    return true
  } catch {
    return false
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
const skip = skipUnless(canMount(), 'mounting a tmpfs (root)')

/** A 12 MiB tmpfs, removed at teardown. */
function smallDisk(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'blockrep-small-disk-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', dir], { stdio: 'ignore' })
  t.teardown(() => {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
  return dir
}

/** Fills the filesystem at `dir` until it refuses another byte; returns the error code that stopped it. */
function fill(dir: string): string | undefined {
  const fd = openSync(join(dir, 'filler'), 'w')
  const chunk = Buffer.alloc(64 * 1024, 1)
  try {
    for (;;) writeSync(fd, chunk)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code
  } finally {
    closeSync(fd)
  }
}

/** Bytes still free for an unprivileged writer on the filesystem at `dir`. */
function freeBytes(dir: string): number {
  const s = statfsSync(dir)
  return s.bavail * s.bsize
}

t.test('full disk - init on a disk too small fails naming the file, and leaves nothing behind', { skip }, async (t) => {
  const disk = smallDisk(t)
  const data = join(disk, 'v.img')
  const r = await run(['init', '--data', data, '--size', '16M', '--node', 'a', '--role', 'primary', '--journal-size', '2M']).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  )
  t.equal(r.code, 1, 'exit 1')
  t.match(r.stderr, /ERR_NO_SPACE/, 'typed error')
  t.match(r.stderr, /v\.img/, 'names the file')
  t.notOk(existsSync(data), 'no half-made data file is left')
})

t.test('full disk - when the disk fills up, the primary keeps accepting writes into its preallocated volume and journal', { skip }, async (t) => {
  const disk = smallDisk(t)
  const size = 4 * MiB
  const c = await Cluster.create(t, { nodes: ['a', 'b'], size, journalSize: 2 * MiB })
  c.node('a').data = join(disk, 'a.img')
  c.writeConfig('a')
  await c.initAll()
  await c.startAll()
  await c.waitInSync('b')
  // the disk fills up while the agents run
  t.equal(fill(disk), 'ENOSPC', 'the filler stopped on ENOSPC')
  t.ok(freeBytes(disk) < 64 * 1024, `the filesystem is full (${freeBytes(disk)} bytes free)`)
  const nbd = await c.nbd('a')
  const model = new VolumeModel(size)
  await model.randomWrites(nbd, 3000, 77)
  t.equal(model.failed, 0, 'no client write failed')
  await nbd.flush()
  const st = await c.waitInSync('b')
  t.ok(st.headSeq >= 3000, `all ${st.headSeq} writes accepted on a full filesystem`)
  t.ok(st.journal.tailSeq > 1, `the journal wrapped (tail seq ${st.journal.tailSeq}) without needing more space`)
  t.ok(freeBytes(disk) < 64 * 1024, 'the disk is still full: nothing was written outside the preallocated files')
  t.same(model.mismatches(c.node('a').data), [], `primary: ${model.describe(c.node('a').data)}`)
  t.same(model.mismatches(c.node('b').data), [], `standby: ${model.describe(c.node('b').data)}`)
  await nbd.close()
  t.equal(await c.kill('a', 'SIGTERM'), 0, 'a clean shutdown on the full disk (its metadata written in place) exits 0')
  await c.start('a')
  t.equal((await c.status('a')).headSeq, st.headSeq, 'and the primary reopens at the same head')
})
