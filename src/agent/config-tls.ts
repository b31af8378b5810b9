import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { TlsConfig } from '../wire/tls-transport.js'
import type { Checker } from './config-fields.js'

/** The `tls` section of an agent config, files read; paths kept for messages (the key's content is never shown). */
export interface TlsSettings extends TlsConfig {
  certFile: string
  keyFile: string
  caFile: string
}

export const TLS_KEYS = ['cert', 'key', 'ca', 'require', 'verifyHostname'] as const

/**
 * `tls: { cert, key, ca, require?, verifyHostname? }`: PEM files, relative to
 * the config file's directory. Every file must be readable and look like PEM;
 * a key file that holds a certificate (or the reverse) is reported, without
 * ever quoting the file. Absent or null: the link runs without TLS.
 */
export function parseTls(c: Checker, v: unknown, baseDir: string): TlsSettings | null {
  if (v === undefined || v === null) return null
  const rec = c.object(v, 'tls', TLS_KEYS)
  if (rec === undefined) return null
  const pem = (key: 'cert' | 'key' | 'ca', label: RegExp, what: string): { file: string; data: Buffer } | undefined => {
    const path = `tls.${key}`
    const p = c.string(rec[key], path, true)
    if (p === undefined) return undefined
    const file = resolve(baseDir, p)
    let data: Buffer
    try {
      data = readFileSync(file)
    } catch (err) {
      c.add(path, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      return undefined
    }
    if (!label.test(data.toString('latin1'))) {
      c.add(path, `${file} does not hold ${what} in PEM form`)
      return undefined
    }
    return { file, data }
  }
  const cert = pem('cert', /-----BEGIN CERTIFICATE-----/, 'a certificate')
  const key = pem('key', /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/, 'a private key')
  const ca = pem('ca', /-----BEGIN CERTIFICATE-----/, 'a CA certificate')
  const require = c.bool(rec.require, 'tls.require', true)
  const verifyHostname = c.bool(rec.verifyHostname, 'tls.verifyHostname', true)
  if (cert === undefined || key === undefined || ca === undefined) return null
  return { cert: cert.data, key: key.data, ca: ca.data, certFile: cert.file, keyFile: key.file, caFile: ca.file, require, verifyHostname }
}
