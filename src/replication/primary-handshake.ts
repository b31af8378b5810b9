import type { FrameTransport } from '../wire/transport.js'
import type { WireMeta } from '../wire/messages.js'
import { PROTOCOL_VERSION } from '../wire/messages.js'
import type { BlockBitmap } from '../storage/types.js'
import { decide, needsDivergenceQuery } from './decide.js'
import type { Decision, PrimaryFacts, StandbyFacts } from './decide.js'
import { blocksSince, journalGap } from './facts.js'
import { expectFrame, helloAndAuth, unexpected } from './handshake.js'
import type { NodeStore } from './node-store.js'
import { BlockrepError } from '../util/errors.js'

export interface HandshakeResult {
  decision: Decision
  standby: WireMeta
  /** the primary's head when the decision was made: B_1 covers writes up to it, so round 1 freezes there */
  headAtDecision: number
}

/** Deserializes a peer's bitmap; a malformed one is treated as absent (never trusted). */
export function peerBitmap(store: NodeStore, buf: Buffer | null): BlockBitmap | null {
  if (!buf) return null
  try {
    return store.bitmaps().deserialize(Buffer.from(buf))
  } catch {
    return null
  }
}

/** The facts the primary holds about `peerId` for a standby at `standbyHead`, and a branch point when diverged. */
export function primaryFacts(store: NodeStore, peerId: string, standbyHead: number, branchSeq: number | null): PrimaryFacts {
  const peer = store.meta.peers[peerId] ?? null
  const gap = journalGap(store, standbyHead)
  const since = blocksSince(store, peer, standbyHead)
  return {
    volumeId: store.meta.volumeId,
    blockSize: store.meta.blockSize,
    size: store.meta.size,
    version: PROTOCOL_VERSION,
    role: store.meta.role,
    epochs: store.meta.epochs,
    headSeq: store.journal.headSeq,
    journalTail: store.journal.tailSeq,
    peer: peer ? { ackedSeq: peer.ackedSeq, bitmapValid: peer.bitmapValid, dirtyBlocks: peer.dirty.size } : null,
    blocksSinceBranch: branchSeq === null ? null : blocksSince(store, peer, branchSeq),
    bitmapSinceStandbyHead: since,
    blocksSinceStandbyHead: since ? since.size : null,
    journalBytesSinceStandbyHead: gap ? gap.bytes : null,
    journalRecordsSinceStandbyHead: gap ? gap.records : null,
  }
}

/** What the handshake would decide for this standby now (used by `plan` without moving data). */
export function decideFor(store: NodeStore, standby: WireMeta, divergence?: BlockBitmap | null): Decision {
  // a standby initialised without a volume id adopts the primary's on its first FULL
  const meta = standby.volumeId === '' && !standby.syncedOnce ? { ...standby, volumeId: store.meta.volumeId } : standby
  const branch = needsDivergenceQuery({ epochs: store.meta.epochs, headSeq: store.journal.headSeq }, meta)
  const facts = primaryFacts(store, meta.nodeId, meta.headSeq, branch)
  const sf: StandbyFacts = {
    meta,
    version: PROTOCOL_VERSION,
    resyncRemaining: peerBitmap(store, meta.resyncRemaining),
    divergence,
  }
  return decide(facts, sf, { bitmaps: store.bitmaps(), totalBlocks: store.blocks })
}

/**
 * The primary's side of the handshake: HELLO + auth, META both ways, the
 * divergence query when the standby's head left our history, decide, MODE.
 * Throws on refusal (after telling the standby why).
 */
export async function primaryHandshake(
  t: FrameTransport,
  store: NodeStore,
  secret: string,
  peerId: string,
  checksum: boolean,
  /** sees the peer's META first; may throw to end the handshake (a newer epoch: this node is fenced) */
  onMeta?: (meta: WireMeta) => void,
): Promise<HandshakeResult> {
  await helloAndAuth(t, store, secret, true, peerId)
  t.send({ type: 'META', meta: store.toWire() })
  const standby = (await expectFrame(t, 'META')).msg.meta
  onMeta?.(standby)
  let divergence: BlockBitmap | null | undefined
  const meta = standby.volumeId === '' && !standby.syncedOnce ? { ...standby, volumeId: store.meta.volumeId } : standby
  const branch = needsDivergenceQuery({ epochs: store.meta.epochs, headSeq: store.journal.headSeq }, meta)
  if (branch !== null) {
    t.send({ type: 'DIVERGENCE_QUERY', branchSeq: branch })
    const ans = (await expectFrame(t, 'DIVERGENCE_BLOCKS')).msg
    divergence = ans.known ? peerBitmap(store, ans.bitmap) : null
  }
  const headAtDecision = store.journal.headSeq
  const decision = decideFor(store, standby, divergence)
  if (decision.mode === 'REFUSE') {
    const err = new BlockrepError('ERR_HANDSHAKE_REFUSED', `refused ${peerId}: ${decision.reason}`, { context: { peer: peerId, rule: decision.rule } })
    await t.close(err)
    throw err
  }
  t.send({
    type: 'MODE',
    mode: decision.mode,
    reason: decision.reason,
    blocks: decision.blocks,
    bytes: decision.bytes,
    epochs: store.meta.epochs,
    branchSeq: decision.divergence ? decision.divergence.branchSeq : null,
    checksum: checksum && decision.mode === 'FULL',
  })
  const reply = await t.next(30_000)
  if (reply.msg.type === 'MODE_REFUSE') {
    throw new BlockrepError('ERR_HANDSHAKE_REFUSED', `${peerId} refused ${decision.mode}: ${reply.msg.reason}`, { context: { peer: peerId, mode: decision.mode } })
  }
  if (reply.msg.type !== 'MODE_ACCEPT') throw unexpected(reply, 'MODE_ACCEPT')
  return { decision, standby, headAtDecision }
}
