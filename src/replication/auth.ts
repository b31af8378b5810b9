import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { BlockrepError, ErrorCode } from '../util/errors.js'

/** Nonce and proof length in bytes. */
export const NONCE_LENGTH = 32
/** Shortest shared secret accepted, in bytes (UTF-8). */
export const MIN_SECRET_BYTES = 16

const DOMAIN = Buffer.from('blockrep-auth-v1\0', 'utf8')
const NUL = Buffer.from([0])

/** 32 fresh random bytes for HELLO.nonce. */
export function newNonce(): Buffer {
  return randomBytes(NONCE_LENGTH)
}

/**
 * The AUTH proof a node sends:
 * `HMAC-SHA-256(secret, "blockrep-auth-v1\0" + senderNodeId + "\0" + peerNonce + ownNonce)`.
 *
 * All arguments are from the sender's point of view: `peerNonce` is the nonce
 * the receiver put in its HELLO (the challenge), `ownNonce` the sender's own.
 * Binding the sender's id and the nonce order means a proof can never be
 * replayed as the other side's proof (reflection): that one has the other id
 * and the nonces swapped. The handshake must still refuse a peer whose nodeId
 * equals its own.
 * @throws BlockrepError ERR_AUTH_FAILED when a nonce is not 32 bytes or the id contains NUL
 */
export function authProof(secret: string | Buffer, senderNodeId: string, peerNonce: Uint8Array, ownNonce: Uint8Array): Buffer {
  if (peerNonce.byteLength !== NONCE_LENGTH || ownNonce.byteLength !== NONCE_LENGTH) {
    throw new BlockrepError(ErrorCode.AUTH_FAILED, `auth nonces must be ${NONCE_LENGTH} bytes`, {
      context: { peerNonce: peerNonce.byteLength, ownNonce: ownNonce.byteLength },
    })
  }
  if (senderNodeId.length === 0 || senderNodeId.includes('\0')) {
    throw new BlockrepError(ErrorCode.AUTH_FAILED, 'auth node id must be non-empty and contain no NUL', { context: { senderNodeId } })
  }
  return createHmac('sha256', secret)
    .update(DOMAIN)
    .update(senderNodeId, 'utf8')
    .update(NUL)
    .update(peerNonce)
    .update(ownNonce)
    .digest()
}

/**
 * Check a received AUTH proof. Arguments as in `authProof`, from the sender's
 * point of view; the verifier calls
 * `verifyProof(secret, peerHello.nodeId, myHello.nonce, peerHello.nonce, auth.proof)`.
 * False (never a throw) for a wrong length, malformed nonces, equal nonces (an
 * echoed challenge) or a mismatch; constant-time comparison.
 */
export function verifyProof(
  secret: string | Buffer,
  senderNodeId: string,
  peerNonce: Uint8Array,
  ownNonce: Uint8Array,
  proof: Uint8Array,
): boolean {
  if (proof.byteLength !== NONCE_LENGTH) return false
  if (peerNonce.byteLength === NONCE_LENGTH && Buffer.from(peerNonce).equals(Buffer.from(ownNonce))) return false
  let expected: Buffer
  try {
    expected = authProof(secret, senderNodeId, peerNonce, ownNonce)
  } catch {
    return false
  }
  return timingSafeEqual(expected, proof)
}

/**
 * The shared secret from `value` (e.g. an environment variable) or, when that
 * is absent, from `file` (contents trimmed, so a trailing newline is fine).
 * @throws BlockrepError ERR_CONFIG when neither is given, the file cannot be
 * read, or the secret is shorter than 16 bytes. The secret is never put in the error.
 */
export function loadSecret(value?: string, file?: string): string {
  let secret: string
  let source: string
  if (value !== undefined && value !== '') {
    secret = value.trim()
    source = 'value'
  } else if (file !== undefined && file !== '') {
    try {
      secret = readFileSync(file, 'utf8').trim()
    } catch (err) {
      throw new BlockrepError(ErrorCode.CONFIG, `cannot read the shared secret file ${file}: ${(err as Error).message}`, {
        cause: err,
        context: { file },
      })
    }
    source = file
  } else {
    throw new BlockrepError(ErrorCode.CONFIG, 'no shared secret configured (give a secret or a secret file)')
  }
  const bytes = Buffer.byteLength(secret, 'utf8')
  if (bytes === 0) throw new BlockrepError(ErrorCode.CONFIG, `the shared secret from ${source} is empty`, { context: { source } })
  if (bytes < MIN_SECRET_BYTES) {
    throw new BlockrepError(ErrorCode.CONFIG, `the shared secret from ${source} is ${bytes} bytes; at least ${MIN_SECRET_BYTES} are required`, {
      context: { source, bytes },
    })
  }
  return secret
}
