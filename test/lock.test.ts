import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { flockLocks } from '../src/storage/flock-lock.js'
import { locks } from '../src/storage/lock.js'
import { pidFileLocks } from '../native-free/lock.js'
import type { LockFactory } from '../src/storage/types.js'

const helper = fileURLToPath(new URL('./helpers/lock-holder.ts', import.meta.url))
// Only the TypeScript loader tap runs us with; not its coverage hooks.
const loader = process.execArgv.filter(a => a.includes('typescript'))

/** Spawns a process that holds the lock; resolves once it reports "locked". */
async function holdInChild(t: Test, kind: string, volume: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...loader, helper, kind, volume], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  const line = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('\n')) resolve(out.trim())
    })
    child.on('exit', code => reject(new Error(`holder exited ${code}: ${out}`)))
  })
  if (line !== `locked ${child.pid}`) throw new Error(`unexpected holder output: ${line}`)
  return child
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
}

const factories: [string, LockFactory][] = [
  ['native', flockLocks()],
  ['native-free', pidFileLocks()],
]

for (const [kind, f] of factories) {
  t.test(`lock - ${kind}: a lock held by another process is refused with its pid, and free once it dies`, async t => {
    const volume = path.join(t.testdir(), 'vol')
    const child = await holdInChild(t, kind, volume)
    t.throws(() => f.acquire(volume), {
      code: 'ERR_LOCK_HELD',
      message: `volume ${volume} is locked by pid ${child.pid}`,
      context: { path: volume, holderPid: child.pid },
    })
    await kill(child)
    const lock = f.acquire(volume)
    t.equal(lock.path, volume)
    t.match(fs.readFileSync(`${volume}.lock`, 'utf8'), new RegExp(`^${process.pid}`))
    lock.release()
    t.notOk(fs.existsSync(`${volume}.lock`), 'release removes the lock file')
    lock.release()
  })

  t.test(`lock - ${kind}: a second acquire in the same process is refused until release`, async t => {
    const volume = path.join(t.testdir(), 'vol')
    const a = f.acquire(volume)
    t.throws(() => f.acquire(volume), { code: 'ERR_LOCK_HELD', context: { holderPid: process.pid } })
    a.release()
    f.acquire(volume).release()
  })
}

t.test('lock - native and native-free refuse each other', async t => {
  const dir = t.testdir()
  const v1 = path.join(dir, 'v1')
  const c1 = await holdInChild(t, 'native-free', v1)
  t.throws(() => flockLocks().acquire(v1), { code: 'ERR_LOCK_HELD', context: { holderPid: c1.pid } })
  await kill(c1)
  flockLocks().acquire(v1).release()

  const v2 = path.join(dir, 'v2')
  const c2 = await holdInChild(t, 'native', v2)
  t.throws(() => pidFileLocks().acquire(v2), { code: 'ERR_LOCK_HELD', context: { holderPid: c2.pid } })
  await kill(c2)
  // the dead native holder left "<pid> flock" behind; its pid is gone, so the file is stale
  pidFileLocks().acquire(v2).release()
})

t.test('lock - a stale file from a crashed holder is taken over, an empty fresh one is not', async t => {
  const dir = t.testdir()
  const v = path.join(dir, 'vol')
  const dead = spawn(process.execPath, ['-e', '0'])
  await new Promise(resolve => dead.once('exit', resolve))
  for (const [, f] of factories) {
    fs.writeFileSync(`${v}.lock`, `${dead.pid}\n`)
    f.acquire(v).release()
    fs.writeFileSync(`${v}.lock`, '')
    t.throws(() => f.acquire(v), { code: 'ERR_LOCK_HELD', context: { holderPid: null } })
    const old = new Date(Date.now() - 60_000)
    fs.utimesSync(`${v}.lock`, old, old)
    f.acquire(v).release()
  }
})

t.test('lock - locks() picks the factory by BLOCKREP_NATIVE_FREE', async t => {
  const saved = process.env.BLOCKREP_NATIVE_FREE
  t.teardown(() => {
    if (saved === undefined) delete process.env.BLOCKREP_NATIVE_FREE
    else process.env.BLOCKREP_NATIVE_FREE = saved
  })
  process.env.BLOCKREP_NATIVE_FREE = '1'
  t.equal(locks().kind, 'native-free')
  process.env.BLOCKREP_NATIVE_FREE = '0'
  t.equal(locks().kind, 'native')
})
