import { BlockrepError } from '../util/errors.js'

/** "HOST:PORT" (IPv6 in brackets) → [host, port]; ERR_USAGE naming `field` when it is not one. */
export function splitHostPort(address: string, field: string, opts: { allowPortZero?: boolean } = {}): [string, number] {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address)
  const port = m === null ? NaN : Number(m[2])
  if (m === null || m[1] === '' || !(port >= (opts.allowPortZero === true ? 0 : 1) && port < 65536)) {
    throw new BlockrepError('ERR_USAGE', `${field}: expected HOST:PORT, got ${JSON.stringify(address)}`, { context: { field, address } })
  }
  return [m[1] as string, port]
}
