import type { Command } from 'commander'
import { resolve as resolvePath } from 'node:path'
import { loadControllerConfig } from '../control/config.js'
import { Controller } from '../control/controller.js'
import { CenterServer } from '../control/center-server.js'
import { openStore } from '../control/store-factory.js'
import { parseHostPort } from '../agent/config-fields.js'
import { createLogger } from '../util/log.js'

/** `blockrep controller`: heartbeats the agents, fails over, serves the configuration center, until SIGTERM/SIGINT. */
export function register(program: Command): void {
  program
    .command('controller')
    .description('run the controller: health, alarms, fenced failover, configuration center (SIGTERM/SIGINT stop it)')
    .requiredOption('--config <file>', 'controller config file (JSON or YAML)')
    .option('--store <spec>', 'override the config\'s store: a file path, or etcd://HOST:PORT[,HOST:PORT…][/prefix]')
    .action(async (flags: { config: string; store?: string }) => {
      const cfg = loadControllerConfig(flags.config)
      if (flags.store !== undefined) cfg.store = /^[a-z][a-z0-9+.-]*:\/\//i.test(flags.store) ? flags.store : resolvePath(flags.store)
      const log = createLogger({ level: cfg.log.level }).child({ component: 'controller' })
      const store = await openStore(cfg.store, { log })
      const ctl = new Controller(cfg, store, log)
      const server = new CenterServer(ctl, log, cfg.adminToken)
      try {
        await ctl.start()
        const listen = parseHostPort(cfg.listen, 'listen', { allowPortZero: true })
        const at = await server.listen(listen.host, listen.port)
        log.info({ host: at.host, port: at.port, store: cfg.store }, 'controller API listening')
      } catch (err) {
        await ctl.stop()
        await store.close().catch(() => {})
        throw err
      }
      await new Promise<void>(resolve => {
        const stop = (signal: string): void => {
          log.info({ signal }, 'stopping')
          process.off('SIGTERM', onTerm)
          process.off('SIGINT', onInt)
          resolve()
        }
        const onTerm = (): void => stop('SIGTERM')
        const onInt = (): void => stop('SIGINT')
        process.on('SIGTERM', onTerm)
        process.on('SIGINT', onInt)
        const poll = setInterval(() => {
          if (ctl.isStopped) {
            // the controller stopped on its own: it lost its leadership of the store
            log.error({}, 'the controller stopped acting (leadership lost); exiting')
            process.exitCode = 1
            clearInterval(poll)
            resolve()
          }
        }, 500)
        poll.unref()
      })
      await server.close()
      await ctl.stop()
      await store.close()
    })
}
