import type { FrameTransport } from '../wire/transport.js'
import type { Frame, HelloMsg, Message, MessageType } from '../wire/messages.js'
import { PROTOCOL_VERSION } from '../wire/messages.js'
import { DEFAULT_LIMITS } from '../wire/frame-codec.js'
import { authProof, newNonce, verifyProof } from './auth.js'
import { BlockrepError } from '../util/errors.js'
import type { NodeStore } from './node-store.js'

export const HANDSHAKE_TIMEOUT_MS = 10_000

/** The next frame, which must be of `type`; an ERROR frame from the peer becomes a typed error. */
export async function expectFrame<T extends MessageType>(
  t: FrameTransport,
  type: T,
  timeoutMs = HANDSHAKE_TIMEOUT_MS,
): Promise<Frame & { msg: Extract<Message, { type: T }> }> {
  const f = await t.next(timeoutMs)
  if (f.msg.type === type) return f as Frame & { msg: Extract<Message, { type: T }> }
  throw unexpected(f, type)
}

export function unexpected(f: Frame, wanted: string): BlockrepError {
  if (f.msg.type === 'ERROR') {
    const code = f.msg.code === 'ERR_AUTH_FAILED' ? 'ERR_AUTH_FAILED' : 'ERR_HANDSHAKE_REFUSED'
    return new BlockrepError(code, `peer ${f.msg.code}: ${f.msg.message}`, { context: { peerCode: f.msg.code } })
  }
  return new BlockrepError('ERR_PROTOCOL', `expected ${wanted}, got ${f.msg.type}`, { context: { wanted, got: f.msg.type } })
}

function helloOf(store: NodeStore, nonce: Buffer): HelloMsg {
  const m = store.meta
  return {
    type: 'HELLO',
    version: PROTOCOL_VERSION,
    volumeId: m.volumeId,
    nodeId: m.nodeId,
    role: m.role,
    blockSize: m.blockSize,
    size: m.size,
    nonce,
  }
}

/**
 * HELLO both ways, then mutual HMAC challenge–response. Nothing about the
 * volume's data or metadata crosses before both proofs check. `dialer` sends
 * its HELLO first. Returns the peer's HELLO.
 */
export async function helloAndAuth(
  t: FrameTransport,
  store: NodeStore,
  secret: string,
  dialer: boolean,
  expectNode?: string,
): Promise<HelloMsg> {
  const nonce = newNonce()
  const mine = helloOf(store, nonce)
  if (dialer) t.send(mine)
  const peer = (await expectFrame(t, 'HELLO')).msg
  if (!dialer) t.send(mine)
  if (peer.version !== PROTOCOL_VERSION) {
    throw new BlockrepError('ERR_HANDSHAKE_REFUSED', `protocol version ${peer.version} from ${peer.nodeId}, this node speaks ${PROTOCOL_VERSION}`, { context: { peer: peer.nodeId, theirs: peer.version, ours: PROTOCOL_VERSION } })
  }
  if (expectNode !== undefined && peer.nodeId !== expectNode) {
    throw new BlockrepError('ERR_HANDSHAKE_REFUSED', `expected node ${expectNode} at ${t.remote}, found ${peer.nodeId}`, { context: { expected: expectNode, got: peer.nodeId } })
  }
  if (peer.nodeId === store.meta.nodeId) {
    throw new BlockrepError('ERR_HANDSHAKE_REFUSED', `peer claims this node's own id ${peer.nodeId}`, { context: { peer: peer.nodeId } })
  }
  t.send({ type: 'AUTH', proof: authProof(secret, store.meta.nodeId, peer.nonce, nonce) })
  const auth = (await expectFrame(t, 'AUTH')).msg
  if (!verifyProof(secret, peer.nodeId, nonce, peer.nonce, auth.proof)) {
    throw new BlockrepError('ERR_AUTH_FAILED', `authentication of ${peer.nodeId} at ${t.remote} failed: wrong shared secret`, { context: { peer: peer.nodeId, remote: t.remote } })
  }
  t.send({ type: 'AUTH_OK' })
  await expectFrame(t, 'AUTH_OK')
  // only an authenticated peer may send frames as large as a META with bitmaps
  t.setLimits(DEFAULT_LIMITS)
  return peer
}
