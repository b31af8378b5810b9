import { BlockrepError } from '../util/errors.js'

/** A node as the configuration center names it. */
export interface VolumeNode {
  node: string
  /** HOST:PORT of its NBD export */
  nbd: string
  admin?: string
  site?: string
}

export interface VolumeStandby extends VolumeNode {
  consistent?: boolean
  ackedSeq?: number
  available?: boolean
}

/**
 * `GET /v1/volumes/NAME` of the configuration center (docs/control-plane.md
 * section 2): which node serves the volume, in which epoch. `revision`
 * increases on every change of the document, `epoch` only on promotion.
 */
export interface VolumeDocument {
  volume: string
  epoch: number
  revision: number
  primary: VolumeNode | null
  standbys: VolumeStandby[]
  updatedAt?: number
}

function bad(field: string, got: unknown): BlockrepError {
  return new BlockrepError('ERR_PROTOCOL', `configuration center: ${field} is invalid (got ${JSON.stringify(got)})`, { context: { field } })
}

function count(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(field, v)
  return v
}

function node(v: unknown, field: string): VolumeNode {
  if (typeof v !== 'object' || v === null) throw bad(field, v)
  const o = v as Record<string, unknown>
  if (typeof o.node !== 'string' || o.node === '') throw bad(`${field}.node`, o.node)
  if (typeof o.nbd !== 'string' || o.nbd === '') throw bad(`${field}.nbd`, o.nbd)
  return o as unknown as VolumeNode
}

/**
 * Check a document from the center (ERR_PROTOCOL naming the bad field) and,
 * when `volume` is given, that it is about that volume.
 */
export function parseVolumeDocument(v: unknown, volume?: string): VolumeDocument {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('document', v)
  const o = v as Record<string, unknown>
  if (typeof o.volume !== 'string') throw bad('volume', o.volume)
  if (volume !== undefined && o.volume !== volume) throw bad('volume', o.volume)
  const epoch = count(o.epoch, 'epoch')
  const revision = count(o.revision, 'revision')
  const primary = o.primary === null || o.primary === undefined ? null : node(o.primary, 'primary')
  const standbysRaw = o.standbys ?? []
  if (!Array.isArray(standbysRaw)) throw bad('standbys', standbysRaw)
  const standbys = standbysRaw.map((s, i) => node(s, `standbys[${i}]`) as VolumeStandby)
  const doc: VolumeDocument = { volume: o.volume, epoch, revision, primary, standbys }
  if (typeof o.updatedAt === 'number') doc.updatedAt = o.updatedAt
  return doc
}

/**
 * Whether `next` is news after `seen`: a newer epoch, or the same epoch at a
 * newer revision. A lower epoch is stale whatever its revision (a center
 * that fell behind, or a deposed controller), and is never delivered.
 */
export function isNewer(next: VolumeDocument, seen: VolumeDocument | null): boolean {
  if (seen === null) return true
  if (next.epoch !== seen.epoch) return next.epoch > seen.epoch
  return next.revision > seen.revision
}
