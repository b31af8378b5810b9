import { formatBytes } from '../util/size.js'
import { formatDuration, percent, progressLine } from './format-status.js'
import type { LastMode, NodeStatus, PeerStatus, PlanEntry } from '../agent/status-types.js'

/**
 * `blockrep status` and `blockrep plan` as text: pure functions of the admin
 * API's answer and the clock value passed in. A peer's row says what is wrong
 * now (`fault`) apart from what went wrong before (`last error`, with its age).
 */

export interface RenderStatusOptions {
  /** ms epoch, for ages and ETAs */
  now: number
  /** include a "resync" row with the figures (off when bars are drawn instead) */
  resyncRows?: boolean
}

type Row = readonly [string, string]

function table(rows: readonly Row[], indent = ''): string {
  const w = Math.max(...rows.map(r => r[0].length))
  return rows.map(([k, v]) => `${indent}${k.padEnd(w)}  ${v}`.trimEnd()).join('\n')
}

function ago(at: number, now: number): string {
  return `${formatDuration((now - at) / 1000)} ago`
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}

/** The node's figures, then one table per peer. */
export function renderStatus(s: NodeStatus, opts: RenderStatusOptions): string {
  const { now } = opts
  const j = s.journal
  const nodeRows: Row[] = [
    ['node', `${s.node} (${s.role}, epoch ${s.epoch})`],
    ['volume', `${s.volumeId === '' ? '(id not known yet: adopted from the primary at the first sync)' : s.volumeId}, ${formatBytes(s.size)} in ${s.blockSize}-byte blocks`],
    ['head seq', String(s.headSeq)],
    ['consistent', s.consistent ? 'yes' : 'no (a resync is incomplete)'],
    ['journal', `seq ${j.tailSeq}..${j.headSeq}, ${formatBytes(j.used)} of ${formatBytes(j.capacity)} used (${percent(j.used, j.capacity)})`],
    ['nbd', s.nbd === null || s.nbd.address === null
      ? 'not exported'
      : `${s.nbd.address} ${s.nbd.readOnly ? 'read-only' : 'read-write'}, ${plural(s.nbd.connections, 'connection')}`],
    ['up', `${formatDuration((now - s.upSince) / 1000)} (since ${new Date(s.upSince).toISOString()})`],
  ]
  for (const w of s.warnings ?? []) nodeRows.push(['warning', w])
  const parts = [table(nodeRows)]
  if (s.peers.length === 0) parts.push('no peers configured')
  for (const p of s.peers) parts.push(p.direction === 'incoming' ? renderIncoming(p, opts) : renderOutgoing(p, opts))
  return `${parts.join('\n\n')}\n`
}

/** "streaming for 4m10s", "syncing (BITMAP round 2) for 3s". */
function stateText(p: PeerStatus, now: number): string {
  const what = p.resync !== null && p.state === 'syncing' ? `syncing (${p.resync.mode} round ${p.resync.round})` : p.state
  return p.stateSince === undefined ? what : `${what} for ${formatDuration((now - p.stateSince) / 1000)}`
}

/**
 * The last mode once: "FULL (rule 1), 16384 blocks, 64.0 MiB, 2s ago", then
 * the reason without the mode and figures it repeats.
 */
export function lastModeRows(m: LastMode | null, now: number): Row[] {
  if (m === null) return [['last mode', '-']]
  const prefix = new RegExp(`^${m.mode.replace(/[^A-Z_]/g, '')} \\(rule (\\d+)\\): `)
  const rule = prefix.exec(m.reason)
  let why = rule === null ? m.reason : m.reason.slice(rule[0].length)
  // FULL's reason ends with its figures in raw numbers: they are in the head line already
  why = why.replace(/ \(\d+ blocks, \d+ bytes\)$/, '')
  const head = `${m.mode}${rule === null ? '' : ` (rule ${rule[1]})`}, ${plural(m.blocks, 'block')}, ${formatBytes(m.bytes)}, ${ago(m.at, now)}`
  return why === '' ? [['last mode', head]] : [['last mode', head], ['', why]]
}

/** `fault` when the link is not working now; `last error` as history, with its age. */
function errorRows(p: PeerStatus, now: number): Row[] {
  const rows: Row[] = []
  const at = p.lastErrorAt ?? null
  const when = at === null ? '' : ` (${ago(at, now)})`
  const fault = p.fault ?? null
  if (fault !== null) rows.push(['fault', fault === p.lastError ? `${fault}${when}` : fault])
  if (p.lastError === null) {
    if (fault === null) rows.push(['last error', '-'])
  } else if (fault !== p.lastError && !(fault ?? '').includes(p.lastError)) {
    const history = p.fault === undefined ? '' : p.state === 'streaming' || p.state === 'syncing' ? ', before the link came up' : ''
    rows.push(['last error', `${p.lastError}${at === null ? '' : ` (${ago(at, now)}${history})`}`])
  }
  return rows
}

function renderOutgoing(p: PeerStatus, opts: RenderStatusOptions): string {
  const { now } = opts
  const unconfirmed = p.ackedConfirmed === false && p.state !== 'streaming' && p.state !== 'syncing'
  const rows: Row[] = [['state', stateText(p, now)], ...errorRows(p, now).filter(r => r[0] === 'fault'), ...lastModeRows(p.lastMode, now)]
  rows.push(['acked seq', unconfirmed ? `${p.ackedSeq} (recorded before this agent started; ${p.node} has not confirmed it since)` : String(p.ackedSeq)])
  const lag = `${plural(p.lagSeq, 'write')}, ${formatBytes(p.lagBytes)}`
  rows.push(['lag', unconfirmed && p.lagSeq > 0 ? `at most ${lag} (until ${p.node} confirms its position)` : lag])
  rows.push(['dirty bitmap', plural(p.bitmapBlocks, 'block')], ['sent', formatBytes(p.bytesSent)])
  if (p.resync !== null && opts.resyncRows !== false) {
    rows.push(['resync', `${p.resync.mode} round ${p.resync.round}: ${progressLine(p.resync, now)}`])
  }
  rows.push(...errorRows(p, now).filter(r => r[0] !== 'fault'))
  const dir = p.direction === 'outgoing' ? '  (this node dials it)' : ''
  return `peer ${p.node}  ${p.address}  ${p.protocol}${dir}\n${table(rows, '  ')}`
}

function contactText(p: PeerStatus, now: number): string {
  const c = p.contact ?? null
  if (c === null) return 'not heard from since this agent started'
  if (!c.reachable && /authentication|refused/.test(c.error ?? '')) return `answered, but the handshake failed (${ago(c.at, now)}): ${c.error}`
  if (!c.reachable) return `unreachable (${ago(c.at, now)}): ${c.error ?? 'no answer'}`
  return `answered as ${c.role ?? 'unknown role'} (${ago(c.at, now)})`
}

function renderIncoming(p: PeerStatus, opts: RenderStatusOptions): string {
  const { now } = opts
  const rows: Row[] = [['state', stateText(p, now)], ...errorRows(p, now).filter(r => r[0] === 'fault')]
  const c = p.contact ?? null
  const told = c !== null && c.error !== null && (p.fault ?? '').includes(c.error)
  if (p.state === 'disconnected' && !told) rows.push(['contact', contactText(p, now)])
  rows.push(...lastModeRows(p.lastMode, now))
  if (p.bitmapBlocks > 0 && p.resync === null && p.state !== 'syncing') rows.push(['to receive', `${plural(p.bitmapBlocks, 'block')} of an interrupted resync`])
  if (p.resync !== null && opts.resyncRows !== false) {
    rows.push(['resync', `${p.resync.mode} round ${p.resync.round}: ${progressLine(p.resync, now)}`])
  }
  rows.push(...errorRows(p, now).filter(r => r[0] !== 'fault'))
  return `peer ${p.node}  ${p.address}  ${p.protocol}  (${p.node} dials this node)\n${table(rows, '  ')}`
}

/** One row per peer: the mode a handshake would choose now and what it would move. */
export function renderPlan(entries: readonly PlanEntry[]): string {
  if (entries.length === 0) return 'no peers configured\n'
  const head = ['PEER', 'MODE', 'BLOCKS', 'BYTES', 'REASON']
  const rows = entries.map(e => [e.node, e.mode, String(e.blocks), formatBytes(e.bytes), e.reason])
  const w = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] as string).length)))
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i] as number))).join('  ')
  return `${[line(head), ...rows.map(line)].join('\n')}\n`
}
