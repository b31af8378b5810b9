import { spawnSync } from 'node:child_process'
import { statSync } from 'node:fs'
import { BlockrepError } from '../util/errors.js'

export type PreallocateResult = { ok: true } | { ok: false; reason: string }

/**
 * Reserves the disk blocks of a regular file (util-linux `fallocate`, since
 * Node has no fallocate call), so the write path never meets a full disk: a
 * journal append that succeeded followed by a data write that failed would
 * leave the primary and its standbys apart. Block devices need nothing. A
 * full disk is an error naming the file and the sizes; a filesystem or
 * system without fallocate leaves the file sparse and says so.
 */
export function preallocate(path: string, bytes: number): PreallocateResult {
  const st = statSync(path)
  if (!st.isFile()) return { ok: true }
  const r = spawnSync('fallocate', ['-l', String(bytes), path], { encoding: 'utf8' })
  if (r.error) return { ok: false, reason: `fallocate is not available (${(r.error as NodeJS.ErrnoException).code}); ${path} stays sparse` }
  if (r.status === 0) return { ok: true }
  const msg = (r.stderr || '').trim()
  if (/No space left/i.test(msg)) {
    throw new BlockrepError('ERR_NO_SPACE', `no space for ${path}: ${bytes} bytes needed (${msg})`, { context: { path, bytes } })
  }
  return { ok: false, reason: `could not preallocate ${path} (${msg || `exit ${r.status}`}); it stays sparse and a full disk would fail writes` }
}
