import { existsSync } from 'node:fs'
import { BlockrepError } from '../util/errors.js'
import type { AgentConfig } from './config.js'

/**
 * Checks an agent makes before it opens its volume, and the notes it keeps
 * for the operator when the config and the volume disagree.
 */

/** Throws ERR_CONFIG naming `blockrep init` when the volume was never initialised (no metadata file). */
export function checkInitialised(cfg: AgentConfig): void {
  if (existsSync(cfg.meta)) return
  const role = cfg.roleGiven ? cfg.role : 'primary|standby'
  const init = `blockrep init --data ${cfg.data} --size SIZE --node ${cfg.node} --role ${role}`
  const data = existsSync(cfg.data) ? `the data file ${cfg.data} exists but ` : ''
  throw new BlockrepError('ERR_CONFIG', `no metadata file ${cfg.meta}: ${data}this node's volume was never initialised; run \`${init}\` first (see docs/operations.md)`, {
    context: { field: 'meta', path: cfg.meta },
  })
}

/**
 * The config's `role` only seeds a volume that has none yet: once
 * initialised, the metadata (set by `init`, `promote`, `demote`) decides, so
 * that a failover does not have to edit config files. When a role given in
 * the config disagrees, the agent starts in the metadata's role and says so
 * (log warning at start, and in `status`), rather than refusing to start.
 */
export function roleNote(cfg: AgentConfig, metaRole: 'primary' | 'standby'): string | null {
  if (!cfg.roleGiven || cfg.role === metaRole) return null
  const how = metaRole === 'primary' ? 'blockrep demote' : 'blockrep promote'
  return `the config says role ${cfg.role} but the volume's metadata says ${metaRole}: started as ${metaRole} ` +
    `(the metadata decides once a volume is initialised; use \`${how}\` to change the role, and remove or correct "role" in ${cfg.source ?? 'the config'})`
}
