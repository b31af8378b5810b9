/** The agent serves the engine's status shapes as they are (see src/replication/status-types.ts). */
export * from '../replication/status-types.js'
