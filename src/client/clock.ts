/** The clock the client side runs on: passed in so the queue and the watch loop can be tested with a fake one. */
export interface Clock {
  /** milliseconds, monotonic */
  now(): number
  setTimeout(fn: () => void, ms: number): ClockTimer
  clearTimeout(timer: ClockTimer): void
}

/** An opaque timer handle. */
export type ClockTimer = unknown

/** Wall time for ages is not needed: performance.now() is monotonic, Node's timers are unref'd by the caller. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms)
    t.unref()
    return t
  },
  clearTimeout: t => clearTimeout(t as NodeJS.Timeout),
}
