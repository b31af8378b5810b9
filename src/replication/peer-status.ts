import type { NodeStore } from './node-store.js'
import type { PeerLink } from './peer-link.js'
import type { PeerConfig } from './peer-config.js'
import type { StandbySession } from './standby-session.js'
import type { IncomingPeerRecord } from './incoming-peers.js'
import { journalGap } from './facts.js'
import { decideFor } from './primary-handshake.js'
import type { PeerStatus, PlanEntry } from './status-types.js'

/**
 * The `PeerStatus` rows of `blockrep status`, from either side of a link:
 * the primary's view of each standby it dials (outgoing), and a standby's
 * view of each configured peer that may dial it (incoming).
 */

/** The primary's row for one standby. Figures are what is true now, not what was last recorded. */
export function outgoingStatus(s: NodeStore, link: PeerLink): PeerStatus {
  const j = s.journal
  const pm = s.meta.peers[link.nodeId]
  const bs = s.meta.blockSize
  const resync = link.meter.view()
  let acked = link.ackedSeq()
  let lagBytes: number
  if (link.state === 'syncing') {
    // a BITMAP/FULL replaces the standby's content: it holds no more than its head at the handshake
    const standbyHead = link.lastStandbyMeta?.headSeq
    if (standbyHead !== undefined) acked = Math.min(acked, standbyHead)
    const frozen = resync?.frozenSeq
    const left = resync === null ? 0 : Math.max(0, resync.blocksTotal - resync.blocksDone) * bs
    const after = frozen === undefined ? (journalGap(s, acked)?.bytes ?? 0) : (journalGap(s, frozen)?.bytes ?? 0)
    lagBytes = left + after
  } else {
    const gap = journalGap(s, acked)
    // past the journal, the lag is what a BITMAP would move: the dirty blocks plus what the journal holds
    lagBytes = gap ? gap.bytes : (pm ? pm.dirty.size * bs : 0) + (journalGap(s, j.tailSeq - 1)?.bytes ?? 0)
  }
  const up = link.state === 'syncing' || link.state === 'streaming'
  let fault: string | null = null
  if (!link.dialling) fault = `not dialled: stopped on this node (\`blockrep connect --peer ${link.nodeId}\` resumes)`
  else if (!up && link.lastError !== null) fault = link.lastError
  return {
    node: link.nodeId,
    address: link.peer.address,
    protocol: link.peer.protocol,
    state: link.state,
    lastMode: link.lastMode,
    ackedSeq: acked,
    lagSeq: Math.max(0, j.headSeq - acked),
    lagBytes,
    bitmapBlocks: pm ? pm.dirty.size : 0,
    resync,
    lastError: link.lastError,
    bytesSent: link.bytesSent,
    lastErrorAt: link.lastErrorAt,
    fault,
    stateSince: link.stateSince,
    direction: 'outgoing',
    ackedConfirmed: link.ackedConfirmed,
  }
}

/**
 * A standby's row for one peer: the live session from it when there is one,
 * else what it remembers (the last refusal or end of session, and whether
 * the peer answers, as what role). `othersLive`: another peer has a session,
 * so this one being quiet is no fault.
 */
export function incomingStatus(s: NodeStore, peer: PeerConfig, session: StandbySession | null, rec: IncomingPeerRecord | null, othersLive: boolean): PeerStatus {
  const j = s.journal
  const base = {
    node: peer.node,
    address: peer.address,
    protocol: peer.protocol,
    ackedSeq: j.headSeq,
    lagSeq: 0,
    lagBytes: 0,
    bitmapBlocks: s.meta.resyncRemaining ? s.meta.resyncRemaining.size : 0,
    lastError: rec?.lastError ?? null,
    lastErrorAt: rec?.lastErrorAt ?? null,
    bytesSent: 0,
    direction: 'incoming' as const,
    contact: rec?.contact ?? null,
  }
  if (session !== null) {
    return {
      ...base,
      state: session.state,
      lastMode: session.mode ? { mode: session.mode.mode, reason: session.mode.reason, blocks: session.mode.blocks, bytes: session.mode.bytes, at: session.modeAt } : null,
      resync: session.meter.view(),
      fault: null,
      stateSince: session.stateSince,
      ackedConfirmed: true,
    }
  }
  return {
    ...base,
    state: 'disconnected',
    lastMode: rec?.lastMode ?? null,
    resync: null,
    fault: othersLive ? null : quietFault(peer, rec),
    stateSince: rec?.since ?? Date.now(),
    ackedConfirmed: true,
  }
}

function quietFault(peer: PeerConfig, rec: IncomingPeerRecord | null): string {
  const c = rec?.contact ?? null
  const parts: string[] = []
  if (rec?.lastError) parts.push(rec.lastError)
  if (c === null) parts.push(`${peer.node} has not connected yet (the primary dials its standbys)`)
  else if (!c.reachable && /authentication|refused/.test(c.error ?? '')) {
    if (!rec?.lastError) parts.push(`${peer.node} answered but the handshake failed: ${c.error}`)
  } else if (!c.reachable) parts.push(`${peer.node} cannot be reached at ${peer.address}: ${c.error ?? 'no answer'}`)
  else if (c.role === 'standby') parts.push(`${peer.node} answers as a standby: no primary is replicating to this node`)
  else if (rec?.lastError === null) parts.push(`${peer.node} is primary and reachable but has not dialled this node (is this node in its peers?)`)
  return parts.join('; ')
}

/** The primary's `plan` row for one standby: what the handshake would decide now, from its last META. */
export function outgoingPlan(store: NodeStore, link: PeerLink): PlanEntry {
  const last = link.lastStandbyMeta
  if (!last) return { node: link.nodeId, mode: 'UNKNOWN', reason: 'this peer has not completed a handshake since the agent started', blocks: 0, bytes: 0 }
  // during a BITMAP/FULL the standby holds no more than its head at the handshake
  const head = link.state === 'syncing' ? last.headSeq : Math.max(last.headSeq, link.ackedSeq())
  const consistent = last.consistent || link.state === 'streaming'
  // a standby that synced since that META adopted our volume id and epoch history
  const synced = link.state === 'streaming'
  const view = synced ? { ...last, volumeId: store.meta.volumeId, epochs: store.meta.epochs } : last
  const d = decideFor(store, { ...view, headSeq: head, consistent, syncedOnce: last.syncedOnce || consistent, resyncRemaining: consistent ? null : last.resyncRemaining })
  return { node: link.nodeId, mode: d.mode, reason: d.reason, blocks: d.blocks, bytes: d.bytes }
}

/**
 * A standby's `plan` row for one peer: the primary decides the catch-up, so
 * the standby shows what the live session runs, or why there is none.
 */
export function incomingPlan(peer: PeerConfig, session: StandbySession | null, rec: IncomingPeerRecord | null): PlanEntry {
  if (session?.mode) {
    const m = session.mode
    return { node: peer.node, mode: m.mode, reason: `decided by ${peer.node} (the primary) at the handshake: ${m.reason}`, blocks: m.blocks, bytes: m.bytes }
  }
  if (session !== null) return { node: peer.node, mode: 'UNKNOWN', reason: `${peer.node} is connecting (handshake in progress)`, blocks: 0, bytes: 0 }
  const refused = rec?.lastError ?? null
  return {
    node: peer.node,
    mode: refused !== null && /refused|authentication/.test(refused) ? 'REFUSED' : 'UNKNOWN',
    reason: `the primary decides the catch-up; no session now: ${quietFault(peer, rec)}`,
    blocks: 0,
    bytes: 0,
  }
}
