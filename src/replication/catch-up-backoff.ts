/** The longest wait between two tries of a catch-up that keeps failing the same way. */
export const FAILURE_BACKOFF_MAX_MS = 60_000

/**
 * The failure record after one session: `failed` is the catch-up's error
 * (null when the session never got past the handshake: ordinary reconnect
 * backoff applies). Digits are ignored when comparing (seqs, byte counts),
 * and any progress (a higher acked seq) starts the count again.
 */
export function repeatedFailure(prev: { signature: string; repeats: number } | null, failed: string | null, progressed: boolean): { signature: string; repeats: number } | null {
  if (failed === null || failed === '') return null
  const signature = failed.replace(/\d+/g, '#')
  if (prev && prev.signature === signature && !progressed) return { signature, repeats: prev.repeats + 1 }
  return { signature, repeats: 0 }
}
