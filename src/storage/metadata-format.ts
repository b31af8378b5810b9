import { Packr } from 'msgpackr'
import { crc32c } from '../util/crc32c.js'
import type { BitmapFactory, BlockBitmap, EpochEntry, NodeMeta, PeerMeta } from './types.js'

/*
 * Metadata file: two equal slots, [0, S) and [S, 2S) with S = file size / 2.
 * Generation g lives in slot g % 2, so a save never overwrites the version
 * it supersedes. Slot (integers little-endian):
 *   0  u32 magic 'BRMD'     4 u16 version   6 u16 reserved
 *   8  u64 generation       (lo u32, hi u32)
 *   16 u32 slotSize         must equal S
 *   20 u32 bodyLength
 *   24 u32 bodyCrc          crc32c of the body
 *   28 u32 headerCrc        crc32c of bytes [0, 28)
 *   32 body: msgpack map (plain msgpack, no extensions), bitmaps as portable Roaring bytes (bin)
 */

export const META_MAGIC = 0x444d5242 // 'BRMD'
export const META_VERSION = 1
export const SLOT_HEADER = 32
export const SLOT_ALIGN = 4096
/** body schema version inside the msgpack map */
const BODY_VERSION = 1

// Plain msgpack: records/structures extensions off so any msgpack reader can decode the body.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

/** Slot size that leaves room to grow: twice the current need, rounded to 4 KiB. */
export function slotSizeFor(bodyLength: number): number {
  return Math.max(SLOT_ALIGN, Math.ceil((2 * (SLOT_HEADER + bodyLength)) / SLOT_ALIGN) * SLOT_ALIGN)
}

export function encodeSlotHeader(generation: number, slotSize: number, body: Buffer): Buffer {
  const h = Buffer.alloc(SLOT_HEADER)
  h.writeUInt32LE(META_MAGIC, 0)
  h.writeUInt16LE(META_VERSION, 4)
  h.writeUInt32LE(generation % 0x100000000, 8)
  h.writeUInt32LE(Math.floor(generation / 0x100000000), 12)
  h.writeUInt32LE(slotSize, 16)
  h.writeUInt32LE(body.length, 20)
  h.writeUInt32LE(crc32c(body), 24)
  h.writeUInt32LE(crc32c(h.subarray(0, 28)), 28)
  return h
}

export type SlotCheck = { ok: true; generation: number; body: Buffer } | { ok: false; blank: boolean; reason: string }

/** Verifies one slot image (`slot` = its bytes, `index` = 0 or 1). Never trusts a field before its crc. */
export function checkSlot(slot: Buffer, index: number): SlotCheck {
  if (slot.length < SLOT_HEADER) return { ok: false, blank: false, reason: 'shorter than a slot header' }
  if (slot.subarray(0, SLOT_HEADER).every(b => b === 0)) return { ok: false, blank: true, reason: 'never written' }
  if (slot.readUInt32LE(0) !== META_MAGIC) return { ok: false, blank: false, reason: 'bad magic' }
  if (crc32c(slot.subarray(0, 28)) !== slot.readUInt32LE(28)) return { ok: false, blank: false, reason: 'header checksum mismatch' }
  if (slot.readUInt16LE(4) !== META_VERSION) return { ok: false, blank: false, reason: `unknown version ${slot.readUInt16LE(4)}` }
  const generation = slot.readUInt32LE(12) * 0x100000000 + slot.readUInt32LE(8)
  if (generation % 2 !== index) return { ok: false, blank: false, reason: `generation ${generation} in the wrong slot` }
  if (slot.readUInt32LE(16) !== slot.length) return { ok: false, blank: false, reason: 'slot size differs from the file layout' }
  const len = slot.readUInt32LE(20)
  if (SLOT_HEADER + len > slot.length) return { ok: false, blank: false, reason: `body length ${len} exceeds the slot` }
  const body = slot.subarray(SLOT_HEADER, SLOT_HEADER + len)
  if (crc32c(body) !== slot.readUInt32LE(24)) return { ok: false, blank: false, reason: 'body checksum mismatch' }
  return { ok: true, generation, body }
}

/** NodeMeta → msgpack body. */
export function encodeBody(meta: NodeMeta): Buffer {
  const peers: Record<string, unknown> = {}
  for (const [id, p] of Object.entries(meta.peers)) {
    peers[id] = { nodeId: p.nodeId, ackedSeq: p.ackedSeq, dirty: p.dirty.serialize(), bitmapValid: p.bitmapValid }
  }
  return packr.pack({
    v: BODY_VERSION,
    volumeId: meta.volumeId,
    nodeId: meta.nodeId,
    blockSize: meta.blockSize,
    size: meta.size,
    role: meta.role,
    epochs: meta.epochs.map(e => ({ epoch: e.epoch, nodeId: e.nodeId, startSeq: e.startSeq })),
    headSeq: meta.headSeq,
    journalTail: meta.journalTail,
    consistent: meta.consistent,
    syncedOnce: meta.syncedOnce,
    resyncRemaining: meta.resyncRemaining ? meta.resyncRemaining.serialize() : null,
    cleanShutdown: meta.cleanShutdown,
    peers,
  })
}

class ShapeError extends Error {}

function field<T>(o: Record<string, unknown>, key: string, kind: 'string' | 'number' | 'boolean'): T {
  const v = o[key]
  if (typeof v !== kind || (kind === 'number' && !Number.isSafeInteger(v))) throw new ShapeError(`field ${key} is not a ${kind}`)
  return v as T
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ShapeError(`${what} is not a map`)
  return v as Record<string, unknown>
}

function bitmap(v: unknown, what: string, factory: BitmapFactory): BlockBitmap {
  if (!(v instanceof Uint8Array)) throw new ShapeError(`${what} is not bytes`)
  return factory.deserialize(Buffer.from(v.buffer, v.byteOffset, v.byteLength))
}

/**
 * msgpack body → NodeMeta, checking every field's type (a body that passed
 * its crc but was written by something else must still not be trusted).
 * Returns a reason string instead of throwing.
 */
export function decodeBody(body: Buffer, factory: BitmapFactory): NodeMeta | string {
  try {
    const o = obj(packr.unpack(body), 'body')
    if (o.v !== BODY_VERSION) return `unknown body version ${String(o.v)}`
    const role = o.role
    if (role !== 'primary' && role !== 'standby') return `bad role ${String(role)}`
    if (!Array.isArray(o.epochs)) return 'epochs is not an array'
    const epochs: EpochEntry[] = o.epochs.map((e, i) => {
      const m = obj(e, `epochs[${i}]`)
      return { epoch: field(m, 'epoch', 'number'), nodeId: field(m, 'nodeId', 'string'), startSeq: field(m, 'startSeq', 'number') }
    })
    const peers: Record<string, PeerMeta> = {}
    for (const [id, v] of Object.entries(obj(o.peers, 'peers'))) {
      const p = obj(v, `peer ${id}`)
      peers[id] = {
        nodeId: field(p, 'nodeId', 'string'),
        ackedSeq: field(p, 'ackedSeq', 'number'),
        dirty: bitmap(p.dirty, `peer ${id} dirty bitmap`, factory),
        bitmapValid: field(p, 'bitmapValid', 'boolean'),
      }
    }
    return {
      volumeId: field(o, 'volumeId', 'string'),
      nodeId: field(o, 'nodeId', 'string'),
      blockSize: field(o, 'blockSize', 'number'),
      size: field(o, 'size', 'number'),
      role,
      epochs,
      headSeq: field(o, 'headSeq', 'number'),
      journalTail: field(o, 'journalTail', 'number'),
      consistent: field(o, 'consistent', 'boolean'),
      syncedOnce: field(o, 'syncedOnce', 'boolean'),
      resyncRemaining: o.resyncRemaining === null ? null : bitmap(o.resyncRemaining, 'resyncRemaining', factory),
      cleanShutdown: field(o, 'cleanShutdown', 'boolean'),
      peers,
    }
  } catch (err) {
    return `body does not decode: ${(err as Error).message}`
  }
}
