/**
 * The soak's NBD writer and its model of what the primary acknowledged.
 *
 * Writes of mixed sizes (512 B up to the export's maximum; a share at byte
 * offsets and lengths that are not multiples of 512) go to the primary, a few
 * in flight, never two touching the same 512-byte sector at once, so the
 * acknowledged content of every byte is known. On success the bytes are copied
 * into `model`; a failed or unanswered write makes the sectors it touched
 * unknown (the write may or may not have landed) until a later acknowledged
 * write covers them whole. When the connection dies (the primary was killed)
 * the writer reconnects and goes on.
 */
import { NbdClient } from '../src/client/nbd-client.js'

const SECTOR = 512
const MiB = 1 << 20
const PATTERN_BYTES = MiB

export interface WriteFailure {
  offset: number
  length: number
  message: string
  /** ms since the writer started */
  at: number
  /** the primary was down or restarting when it failed (an expected failure) */
  primaryDown: boolean
}

export interface WriterStats {
  acked: number
  ackedBytes: number
  failed: number
  largest: number
  /** largest write sent (acknowledged or not): what the journals may have had to hold */
  largestSent: number
  unaligned: number
  reconnects: number
}

export class ModelWriter {
  /** what every byte should hold, per the acknowledged writes */
  readonly model: Buffer
  /** sectors whose content is unknown (a write that failed or went unanswered touched them) */
  readonly unknown: Uint8Array
  private readonly busy: Uint8Array
  readonly failures: WriteFailure[] = []
  readonly stats: WriterStats = { acked: 0, ackedBytes: 0, failed: 0, largest: 0, largestSent: 0, unaligned: 0, reconnects: 0 }
  /** true while the harness has the primary down: failures then are expected */
  primaryDown = false
  private stopping = false
  private nbd: NbdClient | null = null
  private readonly t0 = Date.now()
  private sent = 0
  private writes = 0
  private readonly pattern: Buffer

  constructor(
    readonly size: number,
    private readonly rnd: () => number,
    private readonly maxWrite: number,
    private readonly depth: number,
    private readonly connect: () => Promise<NbdClient>,
    /** MiB/s cap on what is sent; 0 = none */
    private readonly rateMiBps = 0,
  ) {
    this.pattern = Buffer.allocUnsafe(PATTERN_BYTES)
    for (let i = 0; i < PATTERN_BYTES; i += 4) this.pattern.writeUInt32LE((this.rnd() * 4294967296) >>> 0, i)
    this.model = Buffer.alloc(size)
    this.unknown = new Uint8Array(Math.ceil(size / SECTOR))
    this.busy = new Uint8Array(Math.ceil(size / SECTOR))
  }

  /** A write size: mostly small, some large, a few up to the maximum. */
  private pickLength(): number {
    const r = this.rnd()
    const cap = Math.min(this.maxWrite, this.size)
    const span = (lo: number, hi: number) => Math.min(cap, lo + Math.floor(this.rnd() * Math.max(1, hi - lo)))
    if (r < 0.6) return span(SECTOR, 64 * 1024)
    if (r < 0.88) return span(64 * 1024, MiB)
    if (r < 0.97) return span(MiB, 4 * MiB)
    return span(4 * MiB, cap + 1)
  }

  private pick(): { offset: number; length: number } {
    let length = Math.max(SECTOR, Math.min(this.pickLength(), this.size))
    const unaligned = this.rnd() < 0.2
    if (!unaligned) length = Math.max(SECTOR, length - (length % SECTOR))
    let offset = Math.floor(this.rnd() * (this.size - length + 1))
    if (!unaligned) offset -= offset % SECTOR
    return { offset, length }
  }

  private sectors(offset: number, length: number): [number, number] {
    return [Math.floor(offset / SECTOR), Math.ceil((offset + length) / SECTOR)]
  }

  /**
   * A write's data: a slice of the trial's random pattern at a random
   * rotation, stamped at every 512-byte boundary of the volume with the write's
   * number and the absolute offset, so a write landing elsewhere or a stale
   * sector is caught. Native copies only: the fault proxies share this event
   * loop, and a 32 MiB JS fill would stall them.
   */
  private fill(offset: number, length: number): Buffer {
    const b = Buffer.allocUnsafe(length)
    const rot = Math.floor(this.rnd() * PATTERN_BYTES)
    let at = 0
    let from = rot
    while (at < length) {
      const n = this.pattern.copy(b, at, from, Math.min(PATTERN_BYTES, from + (length - at)))
      at += n
      from = 0
    }
    const id = ++this.writes
    for (let abs = Math.ceil(offset / SECTOR) * SECTOR; abs + 8 <= offset + length; abs += SECTOR) {
      b.writeUInt32BE(id >>> 0, abs - offset)
      b.writeUInt32BE(abs % 4294967296, abs - offset + 4)
    }
    return b
  }

  /** Writes until `stop()`; resolves once every write in flight has settled. */
  async run(): Promise<void> {
    const inflight = new Set<Promise<void>>()
    while (!this.stopping) {
      if (!this.nbd) {
        try {
          this.nbd = await this.connect()
        } catch {
          await new Promise((r) => setTimeout(r, 50))
          continue
        }
      }
      const { offset, length } = this.pick()
      const [s0, s1] = this.sectors(offset, length)
      if (this.busy.subarray(s0, s1).some((x) => x !== 0)) {
        if (inflight.size > 0) await Promise.race(inflight)
        continue
      }
      const data = this.fill(offset, length)
      this.stats.largestSent = Math.max(this.stats.largestSent, length)
      this.busy.fill(1, s0, s1)
      if (offset % SECTOR !== 0 || length % SECTOR !== 0) this.stats.unaligned++
      const nbd = this.nbd
      const p = this.one(nbd, offset, data, s0, s1)
      const q: Promise<void> = p.finally(() => {
        this.busy.fill(0, s0, s1)
        inflight.delete(q)
      })
      inflight.add(q)
      this.sent += length
      if (this.rateMiBps > 0) {
        const ahead = (this.sent / (this.rateMiBps * MiB)) * 1000 - (Date.now() - this.t0)
        if (ahead > 0) await new Promise((r) => setTimeout(r, Math.min(ahead, 2000)))
      }
      if (inflight.size >= this.depth) await Promise.race(inflight)
    }
    await Promise.all(inflight)
    await this.nbd?.close().catch(() => {})
    this.nbd = null
  }

  private async one(nbd: NbdClient, offset: number, data: Buffer, s0: number, s1: number): Promise<void> {
    const downAtStart = this.primaryDown
    try {
      await withTimeout(nbd.write(offset, data), 60_000, `write of ${data.length} bytes at ${offset} got no reply in 60 s`)
      data.copy(this.model, offset)
      // sectors this write covered whole are known again
      const first = offset % SECTOR === 0 ? s0 : s0 + 1
      const last = (offset + data.length) % SECTOR === 0 || offset + data.length === this.size ? s1 : s1 - 1
      if (last > first) this.unknown.fill(0, first, last)
      this.stats.acked++
      this.stats.ackedBytes += data.length
      this.stats.largest = Math.max(this.stats.largest, data.length)
    } catch (err) {
      this.unknown.fill(1, s0, s1)
      this.stats.failed++
      const message = (err as Error).message
      this.failures.push({ offset, length: data.length, message, at: Date.now() - this.t0, primaryDown: downAtStart || this.primaryDown || /closed the connection|ECONNRESET|EPIPE|PEER_GONE/.test(message) })
      if (this.nbd === nbd) {
        this.nbd = null
        void nbd.close().catch(() => {})
        this.stats.reconnects++
      }
    }
  }

  stop(): void {
    this.stopping = true
  }

  /**
   * Compares `got` (the volume's bytes from `offset`) with the model, sector
   * by sector, skipping unknown sectors. Returns the bad sectors (at most `max`).
   */
  check(got: Buffer, offset: number, max = 8): number[] {
    const bad: number[] = []
    for (let at = 0; at < got.length; at += SECTOR) {
      const sector = (offset + at) / SECTOR
      if (this.unknown[sector]) continue
      const end = Math.min(at + SECTOR, got.length)
      if (got.compare(this.model, offset + at, offset + end, at, end) !== 0) {
        bad.push(sector)
        if (bad.length >= max) break
      }
    }
    return bad
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)))]).finally(() => clearTimeout(timer))
}
