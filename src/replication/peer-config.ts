import type { ResyncTunables } from './resync-sender.js'
import { BlockrepError } from '../util/errors.js'

/** One standby as the primary's config names it. */
export interface PeerConfig {
  node: string
  address: string
  protocol: 'sync' | 'async'
}

/** The tunables a link uses (agent config `tunables`). */
export interface LinkTunables extends ResyncTunables {
  checksumResync: boolean
  reconnectMinMs: number
  reconnectMaxMs: number
  heartbeatMs: number
  /** wait this long before a journal sync to gather more writes into it (0 = sync at once) */
  groupCommitMs: number
  maxBatchBytes: number
  peerTimeoutMs: number
}

/** Splits "host:port" (IPv6 in brackets). */
export function splitAddress(address: string): [string, number] {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address)
  if (!m) throw new BlockrepError('ERR_CONFIG', `address "${address}" is not host:port`, { context: { address } })
  return [m[1], Number(m[2])]
}
