import t from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { createHmac } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { authProof, loadSecret, newNonce, verifyProof } from '../src/replication/auth.js'
import { connectTransport, FrameTransport, HANDSHAKE_LIMITS } from '../src/wire/index.js'
import type { Message } from '../src/wire/index.js'
import { BlockrepError } from '../src/util/errors.js'

const secret = 'correct horse battery staple'
const na = Buffer.alloc(32, 0x01)
const nb = Buffer.alloc(32, 0x02)

t.test('auth - proof matches the documented formula and a fixed vector', async t => {
  const expected = createHmac('sha256', secret)
    .update(Buffer.concat([Buffer.from('blockrep-auth-v1\0a\0'), nb, na]))
    .digest()
  t.same(authProof(secret, 'a', nb, na), expected)
  t.equal(authProof(secret, 'a', nb, na).toString('hex'), '7bd63f1833f30a13ac918d2c2e4c907ec596bb8e34c3e3a4e2db5e462131050b')
})

t.test('auth - correct proofs verify both ways', async t => {
  // a proves to b: over b's challenge then its own nonce; b verifies with the same arguments
  const fromA = authProof(secret, 'a', nb, na)
  const fromB = authProof(secret, 'b', na, nb)
  t.ok(verifyProof(secret, 'a', nb, na, fromA), 'b accepts a')
  t.ok(verifyProof(secret, 'b', na, nb, fromB), 'a accepts b')
  t.ok(verifyProof(Buffer.from(secret), 'a', nb, na, fromA), 'secret as a Buffer')
  const n1 = newNonce()
  const n2 = newNonce()
  t.equal(n1.length, 32)
  t.notSame(n1, n2, 'fresh nonces differ')
})

t.test('auth - a wrong secret, id or nonce fails', async t => {
  const fromA = authProof(secret, 'a', nb, na)
  t.notOk(verifyProof('another secret of some length', 'a', nb, na, fromA), 'wrong secret')
  t.notOk(verifyProof(secret, 'c', nb, na, fromA), 'wrong sender id')
  t.notOk(verifyProof(secret, 'a', Buffer.alloc(32, 3), na, fromA), 'stale challenge (replay)')
  t.notOk(verifyProof(secret, 'a', nb, na, fromA.subarray(0, 31)), 'short proof')
  t.notOk(verifyProof(secret, 'a', nb, na, Buffer.alloc(32)), 'zero proof')
  t.notOk(verifyProof(secret, 'a', nb, na.subarray(0, 16), fromA), 'short nonce is false, not a throw')
  t.notOk(verifyProof(secret, 'a', na, na, authProof(secret, 'a', na, na)), 'an echoed challenge is refused')
  t.throws(() => authProof(secret, 'a', nb, Buffer.alloc(8)), { code: 'ERR_AUTH_FAILED' })
  t.throws(() => authProof(secret, 'a\0b', nb, na), { code: 'ERR_AUTH_FAILED' })
})

t.test('auth - a reflected proof fails', async t => {
  // the attacker (claiming to be b) gets a to prove itself over the same nonce pair and sends it back
  const fromA = authProof(secret, 'a', nb, na)
  t.notOk(verifyProof(secret, 'b', na, nb, fromA), 'a\'s proof presented as b\'s (nonces as b would order them)')
  t.notOk(verifyProof(secret, 'b', nb, na, fromA), 'a\'s proof presented as b\'s (same nonce order)')
  t.notOk(verifyProof(secret, 'a', na, nb, fromA), 'same id, nonces swapped')
})

t.test('auth - loadSecret reads a value or a file, trimmed, and refuses short ones', async t => {
  const dir = t.testdir({})
  const file = join(dir, 'secret')
  writeFileSync(file, `${secret}\n`)
  t.equal(loadSecret(undefined, file), secret, 'file contents trimmed')
  t.equal(loadSecret(secret), secret, 'value')
  t.equal(loadSecret(secret, join(dir, 'missing')), secret, 'the value wins over the file')
  const code = (fn: () => unknown): string | undefined => {
    try {
      fn()
    } catch (err) {
      t.notMatch((err as Error).message, /tiny/, 'the secret is never in the message')
      return (err as BlockrepError).code
    }
    return undefined
  }
  t.equal(code(() => loadSecret()), 'ERR_CONFIG', 'neither given')
  t.equal(code(() => loadSecret(undefined, join(dir, 'missing'))), 'ERR_CONFIG', 'missing file')
  writeFileSync(file, '  \n')
  t.equal(code(() => loadSecret(undefined, file)), 'ERR_CONFIG', 'empty file')
  writeFileSync(file, 'tiny-secret\n')
  t.equal(code(() => loadSecret(undefined, file)), 'ERR_CONFIG', 'shorter than 16 bytes')
  t.equal(code(() => loadSecret('tiny')), 'ERR_CONFIG', 'short value')
  t.equal(loadSecret('x'.repeat(16)), 'x'.repeat(16), '16 bytes is enough')
})

t.test('auth - mutual challenge-response over a loopback transport', async t => {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const accepted = once(server, 'connection')
  const client = await connectTransport('127.0.0.1', (server.address() as net.AddressInfo).port, { limits: HANDSHAKE_LIMITS })
  const [sock] = (await accepted) as [net.Socket]
  const srv = new FrameTransport(sock, { limits: HANDSHAKE_LIMITS })
  t.teardown(async () => {
    await Promise.all([client.close(), srv.close()])
  })

  const side = async (tr: FrameTransport, nodeId: string, role: 'primary' | 'standby', key: string): Promise<boolean> => {
    const nonce = newNonce()
    tr.send({ type: 'HELLO', version: 1, volumeId: 'v', nodeId, role, blockSize: 4096, size: 1 << 20, nonce })
    const hello = (await tr.next(1000)).msg as Extract<Message, { type: 'HELLO' }>
    tr.send({ type: 'AUTH', proof: authProof(key, nodeId, hello.nonce, nonce) })
    const auth = (await tr.next(1000)).msg as Extract<Message, { type: 'AUTH' }>
    return hello.nodeId !== nodeId && verifyProof(key, hello.nodeId, nonce, hello.nonce, auth.proof)
  }
  t.same(await Promise.all([side(client, 'a', 'primary', secret), side(srv, 'b', 'standby', secret)]), [true, true])
  t.same(await Promise.all([side(client, 'a', 'primary', secret), side(srv, 'b', 'standby', 'a different secret!!')]), [false, false])
})
