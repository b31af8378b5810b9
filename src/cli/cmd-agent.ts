import { Option } from 'commander'
import type { Command } from 'commander'
import { loadConfig } from '../agent/config.js'
import { Agent, adminTarget } from '../agent/agent.js'
import { AdminServer } from '../agent/admin-server.js'
import { createLogger, LOG_FORMATS, resolveLogFormat } from '../util/log.js'

/** `blockrep agent`: runs one node's agent in the foreground until SIGTERM/SIGINT. */
export function register(program: Command): void {
  program
    .command('agent')
    .description("run one node's agent in the foreground (SIGTERM/SIGINT stop it cleanly)")
    .requiredOption('--config <file>', 'agent config file (JSON or YAML)')
    .addOption(new Option('--log <format>', 'log format on stderr (default: pretty on a terminal, json otherwise; env BLOCKREP_LOG_FORMAT)').choices([...LOG_FORMATS]))
    .action(async (flags: { config: string; log?: string }) => {
      const cfg = loadConfig(flags.config)
      const format = resolveLogFormat({ flag: flags.log, configured: cfg.log.format })
      const log = createLogger({ level: cfg.log.level, node: cfg.node, format })
      const agent = await Agent.start(cfg, log)
      let admin: AdminServer | null = null
      if (cfg.admin) {
        admin = new AdminServer({ target: adminTarget(agent), token: cfg.adminToken, host: cfg.admin.host, port: cfg.admin.port, logger: log, metrics: agent.metrics })
        try {
          await admin.listen()
        } catch (err) {
          await agent.stop()
          throw err
        }
      }
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info({ signal }, 'stopping')
          process.off('SIGTERM', onTerm)
          process.off('SIGINT', onInt)
          resolve()
        }
        const onTerm = () => stop('SIGTERM')
        const onInt = () => stop('SIGINT')
        process.on('SIGTERM', onTerm)
        process.on('SIGINT', onInt)
      })
      await admin?.close()
      await agent.stop()
    })
}
