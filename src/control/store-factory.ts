import { BlockrepError } from '../util/errors.js'
import { FileStore } from './file-store.js'
import type { ControlStore } from './store.js'
import { openEtcdStore } from './store-etcd-url.js'
import type { Logger } from '../util/log.js'

/**
 * Opens the store a controller config names: a file path (the embedded
 * default) or a URL whose scheme has a registered factory (`etcd://…`, added
 * by the etcd store with `registerStoreScheme`).
 */
export type StoreOpener = (url: string, opts: { log?: Logger }) => Promise<ControlStore>

const schemes = new Map<string, StoreOpener>()

/** Makes `openStore` accept `<scheme>://…` URLs. */
export function registerStoreScheme(scheme: string, open: StoreOpener): void {
  schemes.set(scheme.toLowerCase(), open)
}

export async function openStore(spec: string, opts: { log?: Logger } = {}): Promise<ControlStore> {
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(spec)
  if (m === null) return FileStore.open(spec)
  const scheme = (m[1] as string).toLowerCase()
  const open = schemes.get(scheme)
  if (open === undefined) {
    throw new BlockrepError('ERR_CONFIG', `store: no store for "${scheme}://" URLs in this build (known: a file path${[...schemes.keys()].map(s => `, ${s}://`).join('')})`, { context: { store: spec } })
  }
  return open(spec, opts)
}

registerStoreScheme('etcd', (url, opts) => openEtcdStore(url, opts))
