/**
 * Replication protocol messages. A frame on the wire is
 *
 *   u32 BE headerLength | u32 BE payloadLength | header (msgpack map) | payload (raw bytes)
 *
 * The header is one of the `Message` objects below; block data travels in the
 * payload, never inside the msgpack header. Messages that carry a payload say
 * so (`payload` in the table); every payload carries a crc32c in its header.
 */
export const PROTOCOL_VERSION = 1

export const MessageType = {
  HELLO: 'HELLO',
  AUTH: 'AUTH',
  AUTH_OK: 'AUTH_OK',
  ERROR: 'ERROR',
  META: 'META',
  DIVERGENCE_QUERY: 'DIVERGENCE_QUERY',
  DIVERGENCE_BLOCKS: 'DIVERGENCE_BLOCKS',
  MODE: 'MODE',
  MODE_ACCEPT: 'MODE_ACCEPT',
  MODE_REFUSE: 'MODE_REFUSE',
  WRITE: 'WRITE',
  ACK: 'ACK',
  ROUND_BEGIN: 'ROUND_BEGIN',
  BLOCKS: 'BLOCKS',
  BLOCKS_ACK: 'BLOCKS_ACK',
  ROUND_END: 'ROUND_END',
  DIGEST_REQ: 'DIGEST_REQ',
  DIGEST_RESP: 'DIGEST_RESP',
  SYNC_DONE: 'SYNC_DONE',
  FLUSH: 'FLUSH',
  FLUSH_ACK: 'FLUSH_ACK',
  PING: 'PING',
  PONG: 'PONG',
  FAILSAFE: 'FAILSAFE',
  FAILSAFE_OK: 'FAILSAFE_OK',
} as const
export type MessageType = (typeof MessageType)[keyof typeof MessageType]

export type ReplMode = 'NONE' | 'HEAD_DELTA' | 'BITMAP' | 'FULL'

/** Both ways first. nonce: 32 random bytes. */
export interface HelloMsg {
  type: 'HELLO'
  version: number
  volumeId: string
  nodeId: string
  role: 'primary' | 'standby'
  blockSize: number
  size: number
  nonce: Buffer
}

/** proof = HMAC-SHA-256(secret, "blockrep-auth-v1\0" + senderNodeId + "\0" + peerNonce + ownNonce) */
export interface AuthMsg { type: 'AUTH'; proof: Buffer }
export interface AuthOkMsg { type: 'AUTH_OK' }
/** Sent before closing on any failure; `code` is a BlockrepError code. */
export interface ErrorMsg { type: 'ERROR'; code: string; message: string }

/** Wire form of NodeMeta: bitmaps as portable Roaring buffers. */
export interface WireMeta {
  volumeId: string
  nodeId: string
  blockSize: number
  size: number
  role: 'primary' | 'standby'
  epochs: { epoch: number; nodeId: string; startSeq: number }[]
  headSeq: number
  journalTail: number
  consistent: boolean
  syncedOnce: boolean
  /** serialized bitmap of blocks still to receive from an interrupted resync */
  resyncRemaining: Buffer | null
  cleanShutdown: boolean
  /** the metadata file failed its checksum (both slots) */
  metaCorrupt: boolean
}
export interface MetaMsg { type: 'META'; meta: WireMeta }

/** Primary → standby after a divergence: which blocks did you write after seq `branchSeq`? */
export interface DivergenceQueryMsg { type: 'DIVERGENCE_QUERY'; branchSeq: number }
/** known=false when the standby's journal no longer reaches back to branchSeq. */
export interface DivergenceBlocksMsg {
  type: 'DIVERGENCE_BLOCKS'
  known: boolean
  bitmap: Buffer | null
  /** first and last seq the standby wrote after the branch point (for the report) */
  fromSeq: number
  toSeq: number
}

export interface ModeMsg {
  type: 'MODE'
  mode: ReplMode
  reason: string
  blocks: number
  bytes: number
  /** the primary's epoch history the standby adopts */
  epochs: { epoch: number; nodeId: string; startSeq: number }[]
  /** for a divergence: the standby rolls its head back to this seq */
  branchSeq: number | null
  /** FULL with checksum comparison */
  checksum: boolean
}
export interface ModeAcceptMsg { type: 'MODE_ACCEPT' }
export interface ModeRefuseMsg { type: 'MODE_REFUSE'; reason: string }

/** A journaled write (HEAD_DELTA replay and streaming). payload: data (absent when zero=true). */
export interface WriteMsg {
  type: 'WRITE'
  seq: number
  epoch: number
  offset: number
  length: number
  /** the range reads back as zeroes (WRITE_ZEROES / TRIM); no payload */
  zero: boolean
  crc: number
}
/** standby → primary: every write up to seq is durable on the standby */
export interface AckMsg { type: 'ACK'; seq: number }

export interface RoundBeginMsg {
  type: 'ROUND_BEGIN'
  round: number
  mode: 'BITMAP' | 'FULL'
  /** number of blocks in B_k */
  blocks: number
  /** primary head g_k at freeze */
  frozenSeq: number
  /** B_k (portable Roaring) so the standby can persist what remains; null = every block (FULL round 1) */
  bitmap: Buffer | null
}
/**
 * Resync data: one or more runs of contiguous blocks, ascending and disjoint.
 * runs: u32 BE pairs (first block, count), 8 bytes a run, at most MAX_BLOCK_RUNS.
 * payload: the runs' blocks concatenated (sum of counts × blockSize bytes).
 */
export interface BlocksMsg { type: 'BLOCKS'; round: number; runs: Buffer; crc: number }
/** Most runs one BLOCKS frame may carry. */
export const MAX_BLOCK_RUNS = 4096

/** Encodes runs for a BLOCKS frame. */
export function encodeRuns(runs: readonly (readonly [number, number])[]): Buffer {
  const b = Buffer.allocUnsafe(runs.length * 8)
  runs.forEach(([block, count], i) => {
    b.writeUInt32BE(block, i * 8)
    b.writeUInt32BE(count, i * 8 + 4)
  })
  return b
}

/** Decodes the runs of a BLOCKS frame. */
export function decodeRuns(runs: Uint8Array): [number, number][] {
  const b = Buffer.from(runs.buffer, runs.byteOffset, runs.byteLength)
  const out: [number, number][] = []
  for (let o = 0; o + 8 <= b.length; o += 8) out.push([b.readUInt32BE(o), b.readUInt32BE(o + 4)])
  return out
}
/** standby → primary: blocks of the round applied and durable (window credit), cumulative count */
export interface BlocksAckMsg { type: 'BLOCKS_ACK'; round: number; applied: number }
export interface RoundEndMsg { type: 'ROUND_END'; round: number }

/** digest of each range of `rangeBlocks` blocks in [block, block + count) */
export interface DigestReqMsg { type: 'DIGEST_REQ'; id: number; block: number; count: number; rangeBlocks: number }
/** payload: concatenated 32-byte SHA-256 digests (or shorter hashes), one per range */
export interface DigestRespMsg { type: 'DIGEST_RESP'; id: number; block: number; count: number; rangeBlocks: number; crc: number }

/** The standby is now consistent at headSeq; it starts streaming. */
export interface SyncDoneMsg { type: 'SYNC_DONE'; headSeq: number }

export interface FlushMsg { type: 'FLUSH'; id: number }
export interface FlushAckMsg { type: 'FLUSH_ACK'; id: number }
export interface PingMsg { type: 'PING'; t: number }
export interface PongMsg { type: 'PONG'; t: number }
/**
 * primary → standby, only while the primary is under a controller: "confirm you
 * know no epoch newer than `epoch` and have not been promoted". `t` is the
 * primary's monotonic send time in whole ms (echoed back, never compared with
 * the standby's clock); `windowMs` is how long the primary will count on the
 * confirmation (failsafeMs): the standby waits that long after its last
 * confirmation before it accepts a write as a promoted primary.
 */
export interface FailsafeMsg { type: 'FAILSAFE'; t: number; epoch: number; windowMs: number }
/** standby → primary: `promised` is true only when `epoch` (the newest it knows) is not above the primary's and no promotion is under way. */
export interface FailsafeOkMsg { type: 'FAILSAFE_OK'; t: number; epoch: number; promised: boolean }

export type Message =
  | HelloMsg | AuthMsg | AuthOkMsg | ErrorMsg | MetaMsg
  | DivergenceQueryMsg | DivergenceBlocksMsg
  | ModeMsg | ModeAcceptMsg | ModeRefuseMsg
  | WriteMsg | AckMsg
  | RoundBeginMsg | BlocksMsg | BlocksAckMsg | RoundEndMsg
  | DigestReqMsg | DigestRespMsg
  | SyncDoneMsg | FlushMsg | FlushAckMsg | PingMsg | PongMsg
  | FailsafeMsg | FailsafeOkMsg

/** A decoded frame: the header message and its payload (empty Buffer when none). */
export interface Frame {
  msg: Message
  payload: Buffer
}
