import type { FailoverActReport } from './failover-act.js'

/** The failover act (failover-act.ts) as `blockrep demo` prints it: steps 6 and 7, and its verdict in the summary. */

/** "6. room east killed (a, c) → the controller promoted b …": the failover as a demo step line. */
export function renderFailover(r: FailoverActReport, n: number): string {
  const what = `${n}. room ${r.room || '?'} killed (${r.killed.join(', ')})`
  if (r.newPrimary === null) return `${what} → FAILED: ${r.error ?? 'no new primary'}`
  const sec = (ms: number | null): string => (ms === null ? '?' : `${(ms / 1000).toFixed(1)} s`)
  const client = `client through nbd-proxy kept writing: ${r.writesAcked} writes, ${r.writeErrors} errors, ${r.writesMissing} missing` +
    (r.proxyFollowed ? '' : ' (the proxy did NOT follow)')
  return `${what} → controller promoted ${r.newPrimary} (room ${r.newRoom}) in epoch ${r.epoch}, published ${sec(r.publishedMs)} after the kill; ${client}; longest pause ${sec(r.maxPauseMs)}`
}

/** "7. a and c restarted → a demoted, rejoined by BITMAP, c by HEAD_DELTA; volumes identical". */
export function renderRejoin(r: FailoverActReport, n: number): string {
  const names = r.killed.length > 1 ? `${r.killed.slice(0, -1).join(', ')} and ${r.killed.at(-1)}` : (r.killed[0] ?? '?')
  const what = `${n}. ${names} restarted`
  if (r.newPrimary === null) return `${what} → not reached`
  const modes = r.killed.filter(id => r.rejoinModes[id] !== undefined).map(id => `${id} by ${r.rejoinModes[id]}`)
  const parts = [`${r.oldPrimary} ${r.demoted ? 'demoted' : 'NOT demoted'}`]
  if (modes.length > 0) parts.push(`rejoined ${r.newPrimary}: ${modes.join(', ')}${r.rejoinSeconds === null ? '' : ` in ${r.rejoinSeconds.toFixed(1)} s`}`)
  parts.push(r.error !== null ? `FAILED: ${r.error}` : r.identical ? 'volumes identical' : 'volumes DIFFER')
  return `${what} → ${parts.join('; ')}`
}

/** "ok (b promoted 2.1 s after the kill; 0 of 812 acknowledged writes missing; rejoined without FULL)" or what failed. */
export function failoverVerdict(f: FailoverActReport | null): string {
  if (f === null) return 'not run'
  const why: string[] = []
  if (f.error !== null) why.push(f.error)
  if (f.newPrimary !== null && f.newRoom === f.room) why.push(`promoted ${f.newPrimary} in the killed room`)
  if (f.writeErrors > 0) why.push(`${f.writeErrors} client write errors (first: ${f.errors[0] ?? '?'})`)
  if (f.writesMissing > 0) why.push(`${f.writesMissing} acknowledged writes missing on ${f.newPrimary}`)
  if (f.newPrimary !== null && !f.proxyFollowed) why.push('nbd-proxy did not follow the new primary')
  if (Object.values(f.rejoinModes).includes('FULL')) why.push('a rejoin needed FULL')
  if (f.demoted && !f.identical && f.error === null) why.push('volumes differ after the rejoin')
  if (f.ok) {
    return `ok (${f.newPrimary} promoted ${((f.publishedMs ?? 0) / 1000).toFixed(1)} s after the kill; 0 of ${f.writesAcked} acknowledged writes missing; rejoined without FULL)`
  }
  return `FAILED (${why.length > 0 ? why.join('; ') : 'see steps 6 and 7'})`
}
