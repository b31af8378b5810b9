import { execFileSync } from 'node:child_process'

/** True on the CI run, where .ci/run installed every tool the tests drive. */
export const inCI = process.env.CI === 'true' || process.env.CI === '1'

/** Whether `bin` is on the PATH. */
export function have(bin: string): boolean {
  try {
    execFileSync('which', [bin], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/**
 * The reason to skip a test whose tool is missing on a developer's machine, or
 * false when it can run. Under CI a missing tool is an error, not a skip:
 * .ci/run installs them, so a skip there would hide a broken set-up.
 */
export function skipUnless(ok: boolean, what: string): string | false {
  if (ok) return false
  if (inCI) throw new Error(`${what} is required on CI (.ci/run installs it)`)
  return `${what} is not available here`
}
