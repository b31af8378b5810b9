import fs from 'node:fs'
import nodePath from 'node:path'
import { BlockrepError } from '../util/errors.js'
import { bitmaps } from './bitmaps.js'
import { SLOT_HEADER, checkSlot, decodeBody, encodeBody, encodeSlotHeader, slotSizeFor } from './metadata-format.js'
import type { BitmapFactory, NodeMeta, PeerMeta } from './types.js'

/** Result of reading the metadata file: never throws for bad content, never returns unverified content. */
export type MetaLoad =
  | { ok: true; meta: NodeMeta; generation: number; fellBack: boolean }
  | { ok: false; reason: string }

function ioError(op: string, path: string, cause: unknown): BlockrepError {
  const errno = (cause as NodeJS.ErrnoException)?.code
  const code = errno === 'ENOSPC' || errno === 'EDQUOT' ? 'ERR_NO_SPACE' : 'ERR_IO'
  return new BlockrepError(code, `metadata ${path}: ${op} failed: ${errno ?? String(cause)}`, { cause, context: { path, errno } })
}

function fsyncDir(file: string): void {
  const fd = fs.openSync(nodePath.dirname(file), 'r')
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * The crash-safe metadata file of one volume (layout in metadata-format.ts).
 * Each save writes generation g+1 into the slot that does not hold g, then
 * fdatasyncs; a torn or corrupt write leaves g readable. When the body
 * outgrows a slot the whole file is rewritten beside the old one (new
 * version and the previous one) and renamed over it, so no moment exists
 * without a readable version.
 */
export class MetadataStore {
  readonly path: string
  private fd: number
  /** 0 when the file's size is not two slots (then the next save relocates) */
  private slotSize: number
  /** generation of the version on disk we trust (0: none) */
  private generation: number
  /** body of that version, kept so a relocation can carry it over as the fallback */
  private body: Buffer | null

  private constructor(path: string, fd: number, slotSize: number, generation: number, body: Buffer | null) {
    this.path = path
    this.fd = fd
    this.slotSize = slotSize
    this.generation = generation
    this.body = body
  }

  /** Creates (or replaces) the metadata file holding `meta` as generation 1, durably. */
  static create(path: string, meta: NodeMeta): MetadataStore {
    const body = encodeBody(meta)
    const slotSize = slotSizeFor(body.length)
    MetadataStore.writeWhole(path, slotSize, 1, body, null)
    return new MetadataStore(path, MetadataStore.openFd(path), slotSize, 1, body)
  }

  /**
   * Opens the file and loads the newest version that verifies. A missing file
   * throws ERR_IO naming it; unreadable content gives `load.ok === false` with
   * the reason for each slot, and the store can still save a fresh version.
   */
  static open(path: string, factory: BitmapFactory = bitmaps()): { store: MetadataStore; load: MetaLoad } {
    const fd = MetadataStore.openFd(path)
    let image: Buffer
    try {
      image = fs.readFileSync(fd)
    } catch (cause) {
      fs.closeSync(fd)
      throw ioError('read', path, cause)
    }
    const half = image.length / 2
    if (image.length < 2 * SLOT_HEADER || !Number.isInteger(half)) {
      const reason = `file size ${image.length} is not two metadata slots`
      return { store: new MetadataStore(path, fd, 0, 0, null), load: { ok: false, reason } }
    }
    const checks = [0, 1].map(i => {
      const c = checkSlot(image.subarray(i * half, (i + 1) * half), i)
      if (!c.ok) return { ...c, index: i }
      const meta = decodeBody(c.body, factory)
      return typeof meta === 'string' ? { ok: false as const, blank: false, reason: meta, index: i } : { ...c, meta, index: i }
    })
    const good = checks.filter(c => c.ok).sort((a, b) => b.generation - a.generation)
    if (good.length === 0) {
      const reason = checks.map(c => `slot ${c.index}: ${c.ok ? 'ok' : c.reason}`).join('; ')
      return { store: new MetadataStore(path, fd, half, 0, null), load: { ok: false, reason } }
    }
    const best = good[0]
    const other = checks[1 - best.index]
    // The other slot holding something unreadable means the newest write was torn or the slot decayed.
    const fellBack = !other.ok && !other.blank
    const store = new MetadataStore(path, fd, half, best.generation, Buffer.from(best.body))
    return { store, load: { ok: true, meta: best.meta, generation: best.generation, fellBack } }
  }

  private static openFd(path: string): number {
    try {
      return fs.openSync(path, fs.constants.O_RDWR)
    } catch (cause) {
      throw ioError('open', path, cause)
    }
  }

  /** Writes a complete two-slot file beside `path` and renames it over, durably. */
  private static writeWhole(path: string, slotSize: number, generation: number, body: Buffer, previous: Buffer | null): void {
    const image = Buffer.alloc(2 * slotSize)
    const put = (gen: number, b: Buffer): void => {
      const at = (gen % 2) * slotSize
      encodeSlotHeader(gen, slotSize, b).copy(image, at)
      b.copy(image, at + SLOT_HEADER)
    }
    if (previous && generation > 1) put(generation - 1, previous)
    put(generation, body)
    const tmp = `${path}.tmp-${process.pid}`
    try {
      const fd = fs.openSync(tmp, 'w', 0o644)
      try {
        fs.writeSync(fd, image, 0, image.length, 0)
        fs.fdatasyncSync(fd)
      } finally {
        fs.closeSync(fd)
      }
      fs.renameSync(tmp, path)
      fsyncDir(path)
    } catch (cause) {
      fs.rmSync(tmp, { force: true })
      throw ioError('write', path, cause)
    }
  }

  /** Durably stores `meta` as the next generation (synchronous: durable when it returns). */
  save(meta: NodeMeta): void {
    if (this.fd < 0) throw new BlockrepError('ERR_IO', `metadata ${this.path} is closed`, { context: { path: this.path } })
    const body = encodeBody(meta)
    const generation = this.generation + 1
    if (this.slotSize === 0 || SLOT_HEADER + body.length > this.slotSize) {
      const slotSize = slotSizeFor(body.length)
      MetadataStore.writeWhole(this.path, slotSize, generation, body, this.body)
      const fd = MetadataStore.openFd(this.path)
      fs.closeSync(this.fd)
      this.fd = fd
      this.slotSize = slotSize
    } else {
      const slot = Buffer.concat([encodeSlotHeader(generation, this.slotSize, body), body])
      const at = (generation % 2) * this.slotSize
      try {
        for (let done = 0; done < slot.length; ) done += fs.writeSync(this.fd, slot, done, slot.length - done, at + done)
        fs.fdatasyncSync(this.fd)
      } catch (cause) {
        throw ioError('write', this.path, cause)
      }
    }
    this.generation = generation
    this.body = body
  }

  /** Closes the file. Closing twice is harmless. */
  close(): void {
    if (this.fd < 0) return
    fs.closeSync(this.fd)
    this.fd = -1
  }
}

/**
 * Metadata for a peer seen for the first time: nothing acknowledged, and the
 * dirty bitmap NOT valid, because nothing tracked that peer's missing writes
 * before now (the engine validates it after a completed sync or a promotion).
 */
export function emptyPeerMeta(nodeId: string): PeerMeta {
  return { nodeId, ackedSeq: 0, dirty: bitmaps().create(), bitmapValid: false }
}
