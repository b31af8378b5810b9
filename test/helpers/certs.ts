import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * Test certificates made with the openssl CLI (EC P-256, valid two days):
 * a self-signed CA and leaf certificates it signs, with the SANs a loopback
 * cluster needs (IP 127.0.0.1, DNS localhost).
 */
export interface CertFiles {
  cert: string
  key: string
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** A CA in `dir` named `name`: `<name>.crt` and `<name>.key`. */
export function makeCa(dir: string, name: string): CertFiles {
  const cert = join(dir, `${name}.crt`)
  const key = join(dir, `${name}.key`)
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`])
  return { cert, key }
}

/** A leaf certificate for `name` signed by `ca`, usable as TLS server and client. */
export function makeCert(dir: string, ca: CertFiles, name: string, sans = 'IP:127.0.0.1,DNS:localhost'): CertFiles {
  const cert = join(dir, `${name}.crt`)
  const key = join(dir, `${name}.key`)
  const csr = join(dir, `${name}.csr`)
  const ext = join(dir, `${name}.ext`)
  writeFileSync(ext, `subjectAltName=${sans}\nextendedKeyUsage=serverAuth,clientAuth\n`)
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`])
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext])
  return { cert, key }
}
