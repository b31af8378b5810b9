import t from 'tap'
import { skipUnless } from './helpers/tools.js'
import type { Test } from 'tap'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { NbdServer } from '../src/nbd/index.js'
import { FileEngine, tempVolume } from './helpers/file-engine.js'
import type { FileEngineOptions } from './helpers/file-engine.js'

const MiB = 1024 * 1024

function which(bin: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some(dir => {
    try {
      fs.accessSync(path.join(dir, bin), fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

const haveQemuIo = which('qemu-io')
const haveQemuImg = which('qemu-img')
const haveNbdinfo = which('nbdinfo')
const haveNbdcopy = which('nbdcopy')
const skipMsg = (bin: string): string | false => skipUnless(false, `${bin} (apt-get install ${bin.startsWith('qemu') ? 'qemu-utils' : 'libnbd-bin'})`)

interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** Run a client; never rejects on a non-zero exit (the caller asserts), only on a timeout or spawn failure. */
function run(bin: string, args: string[], timeout = 60_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout, maxBuffer: 16 * MiB }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') {
        reject(new Error(`${bin} ${args.join(' ')}: ${err.message}\n${stderr}`))
        return
      }
      resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr })
    })
  })
}

async function serve(t: Test, size: number, opts: FileEngineOptions = {}) {
  const vol = tempVolume(size)
  const engine = new FileEngine(vol.file, opts)
  const server = new NbdServer({ engine })
  const { port } = await server.listen(0, '127.0.0.1')
  t.teardown(async () => {
    await server.close()
    engine.close()
    vol.cleanup()
  })
  return { engine, server, vol, url: `nbd://127.0.0.1:${port}` }
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex')
}

function qemuIo(url: string, cmds: string[]): Promise<RunResult> {
  return run('qemu-io', ['-f', 'raw', url, ...cmds.flatMap(c => ['-c', c])])
}

function assertQemuIoOk(t: Test, r: RunResult): void {
  t.equal(r.code, 0, `qemu-io exit 0\n${r.stdout}${r.stderr}`)
  t.notMatch(r.stdout + r.stderr, /Pattern verification failed|error|failed/i, 'no failure reported')
}

t.test('nbd interop - qemu-io write and read back 1 MiB', { skip: !haveQemuIo && skipMsg('qemu-io') }, async t => {
  const { url, vol } = await serve(t, 8 * MiB)
  const r = await qemuIo(url, ['write -P 0xab 0 1M', 'read -P 0xab 0 1M'])
  assertQemuIoOk(t, r)
  const data = fs.readFileSync(vol.file)
  t.ok(data.subarray(0, MiB).every(b => b === 0xab), 'backing file holds the pattern')
  t.ok(data.subarray(MiB).every(b => b === 0), 'and nothing past it')
})

t.test('nbd interop - qemu-io unaligned write, FUA write, flush', { skip: !haveQemuIo && skipMsg('qemu-io') }, async t => {
  const { url, vol, engine, server } = await serve(t, 8 * MiB)
  const r = await qemuIo(url, [
    'write -P 0x5a 1000 3000',
    'read -P 0x5a 1000 3000',
    'read -P 0 0 1000',
    'read -P 0 4000 96',
    'write -f -P 0x11 1M 64k',
    'read -P 0x11 1M 64k',
    'flush',
  ])
  assertQemuIoOk(t, r)
  const data = fs.readFileSync(vol.file)
  t.ok(data.subarray(1000, 4000).every(b => b === 0x5a), 'unaligned range written')
  t.ok(data.subarray(0, 1000).every(b => b === 0) && data[4000] === 0, 'neighbours untouched')
  t.ok(data.subarray(MiB, MiB + 65536).every(b => b === 0x11), 'FUA range written')
  t.ok(engine.fuaWrites >= 1, 'engine saw a FUA write')
  t.ok(engine.flushes >= 1, 'engine saw a flush')
  t.ok(server.stats().bytesWritten >= 3000 + 65536, 'bytes written counted')
})

t.test('nbd interop - qemu-io write -z and discard', { skip: !haveQemuIo && skipMsg('qemu-io') }, async t => {
  const { url, vol, engine } = await serve(t, 8 * MiB)
  const r = await qemuIo(url, [
    'write -P 0xcd 0 256k',
    'write -z 64k 64k',
    'read -P 0 64k 64k',
    'read -P 0xcd 0 64k',
    'read -P 0xcd 128k 128k',
    'discard 1M 1M',
  ])
  assertQemuIoOk(t, r)
  const data = fs.readFileSync(vol.file)
  t.ok(data.subarray(65536, 131072).every(b => b === 0), 'zeroed range reads zero in the file')
  t.ok(data.subarray(131072, 262144).every(b => b === 0xcd), 'rest kept')
  t.ok(engine.trims >= 1, 'engine saw the trim')
})

t.test('nbd interop - qemu-img convert in and out of a 32 MiB random image', { skip: !haveQemuImg && skipMsg('qemu-img') }, async t => {
  const size = 32 * MiB
  const { url, vol } = await serve(t, size)
  const src = path.join(vol.dir, 'src.img')
  const out = path.join(vol.dir, 'out.img')
  const img = randomBytes(size)
  img.fill(0, 5 * MiB, 7 * MiB) // a zero run, so qemu-img may use write-zeroes
  fs.writeFileSync(src, img)

  const rin = await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, url])
  t.equal(rin.code, 0, `convert in: ${rin.stderr}`)
  t.equal(sha256(vol.file), sha256(src), 'backing file is byte-identical to the source')

  const rout = await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url, out])
  t.equal(rout.code, 0, `convert out: ${rout.stderr}`)
  t.equal(sha256(out), sha256(src), 'copy out is byte-identical')
})

t.test('nbd interop - nbdinfo --json reports size and flags', { skip: !haveNbdinfo && skipMsg('nbdinfo') }, async t => {
  const { url } = await serve(t, 16 * MiB, { blockSize: 4096 })
  const r = await run('nbdinfo', ['--json', url])
  t.equal(r.code, 0, r.stderr)
  const info = JSON.parse(r.stdout) as { exports: Array<Record<string, unknown>> }
  const e = info.exports[0] as Record<string, unknown>
  t.equal(e['export-size'], 16 * MiB)
  t.equal(e.can_flush, true)
  t.equal(e.can_fua, true)
  t.equal(e.can_trim, true)
  t.equal(e.can_zero, true)
  t.equal(e.can_multi_conn, true)
  t.equal(e.is_read_only, false)
  t.equal(e.block_size_preferred, 4096)
  t.equal(e.block_size_maximum, 32 * MiB)

  const named = await run('nbdinfo', ['--json', `${url}/vol0`])
  t.equal(named.code, 0, `served under its own name too: ${named.stderr}`)
  const unknown = await run('nbdinfo', [`${url}/nosuch`])
  t.not(unknown.code, 0, 'unknown export refused')
})

t.test('nbd interop - nbdinfo --list', { skip: !haveNbdinfo && skipMsg('nbdinfo') }, async t => {
  const { url } = await serve(t, 4 * MiB)
  const r = await run('nbdinfo', ['--list', '--json', url])
  t.equal(r.code, 0, r.stderr)
  const info = JSON.parse(r.stdout) as { exports: Array<Record<string, unknown>> }
  t.ok(info.exports.some(e => e['export-name'] === 'vol0'), 'vol0 listed')
})

t.test('nbd interop - nbdcopy out over several connections, and back in', { skip: !haveNbdcopy && skipMsg('nbdcopy') }, async t => {
  const size = 24 * MiB
  const { url, vol, server } = await serve(t, size)
  const img = randomBytes(size)
  fs.writeFileSync(vol.file, img)
  const out = path.join(vol.dir, 'out.img')
  const r = await run('nbdcopy', ['--connections=4', '--threads=4', url, out])
  t.equal(r.code, 0, r.stderr)
  t.equal(sha256(out), createHash('sha256').update(img).digest('hex'), 'nbdcopy output identical')
  t.ok(server.stats().totalConnections >= 4, `multi-conn used (${server.stats().totalConnections} connections)`)

  const src = path.join(vol.dir, 'src.img')
  const img2 = randomBytes(size)
  fs.writeFileSync(src, img2)
  const rin = await run('nbdcopy', ['--connections=4', '--threads=4', '--flush', src, url])
  t.equal(rin.code, 0, rin.stderr)
  t.equal(sha256(vol.file), sha256(src), 'nbdcopy in: backing file identical')
})

t.test('nbd interop - a read-only engine refuses qemu-io write', { skip: !haveQemuIo && skipMsg('qemu-io') }, async t => {
  const { url, vol } = await serve(t, 4 * MiB, { readOnly: true })
  const r = await qemuIo(url, ['write -P 0xab 0 64k'])
  t.match(r.stdout + r.stderr, /read-only|permission|not permitted/i, `permission error reported: ${r.stdout}${r.stderr}`)
  t.ok(fs.readFileSync(vol.file).every(b => b === 0), 'nothing written')
  const ro = await run('qemu-io', ['-r', '-f', 'raw', url, '-c', 'read -P 0 0 64k'])
  t.equal(ro.code, 0, 'reads still work read-only')
  if (haveNbdinfo) {
    const info = await run('nbdinfo', ['--json', url])
    const e = (JSON.parse(info.stdout) as { exports: Array<Record<string, unknown>> }).exports[0]
    t.equal(e?.is_read_only, true, 'nbdinfo sees is_read_only')
  }
})
