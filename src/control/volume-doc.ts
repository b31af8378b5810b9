import type { ControllerNodeConfig } from './config.js'
import type { StandbyRef, VolumeDoc } from './store.js'

/** What the controller knows of one member when it writes the document. */
export interface MemberView {
  cfg: ControllerNodeConfig
  available: boolean
  consistent: boolean
  /** the primary's acked seq for it, or its own head */
  ackedSeq: number
}

/**
 * The configuration-center document for a volume (docs/control-plane.md §2).
 * `revision` is the previous one + 1; the caller publishes it only when
 * `sameDoc` says something a client cares about changed.
 */
export function buildDoc(volume: string, prev: VolumeDoc | null, primary: string | null, epoch: number, members: readonly MemberView[], now: number): VolumeDoc {
  const p = members.find(m => m.cfg.node === primary)
  const standbys: StandbyRef[] = members
    .filter(m => m.cfg.node !== primary)
    .map(m => ({ node: m.cfg.node, nbd: m.cfg.nbd, admin: m.cfg.admin, site: m.cfg.site, consistent: m.consistent, ackedSeq: m.ackedSeq, available: m.available }))
  return {
    volume,
    epoch,
    revision: (prev?.revision ?? 0) + 1,
    primary: p === undefined ? null : { node: p.cfg.node, nbd: p.cfg.nbd, admin: p.cfg.admin, site: p.cfg.site },
    standbys,
    updatedAt: now,
  }
}

/**
 * True when the two documents tell a client the same thing: the same epoch,
 * primary and standbys with the same availability and consistency. A
 * standby's `ackedSeq` alone moving does not make a new revision (it moves
 * with every write); it is refreshed whenever a revision is made.
 */
export function sameDoc(a: VolumeDoc | null, b: VolumeDoc | null): boolean {
  if (a === null || b === null) return a === b
  const key = (d: VolumeDoc): string =>
    JSON.stringify([d.volume, d.epoch, d.primary, d.standbys.map(s => [s.node, s.nbd, s.admin, s.site, s.consistent, s.available])])
  return key(a) === key(b)
}
