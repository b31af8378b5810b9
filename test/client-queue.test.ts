import t from 'tap'
import { RequestQueue } from '../src/client/request-queue.js'
import type { QueuePath } from '../src/client/request-queue.js'
import type { Clock } from '../src/client/clock.js'
import type { ProxyOp, UpstreamReply } from '../src/client/proxy-ops.js'
import { nbdErrno } from '../src/nbd/errno.js'
import { Errno } from '../src/nbd/constants.js'

class FakeClock implements Clock {
  t = 0
  private timers: { at: number; fn: () => void; id: number }[] = []
  private nextId = 1
  now(): number {
    return this.t
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++
    this.timers.push({ at: this.t + ms, fn, id })
    return id
  }
  clearTimeout(id: unknown): void {
    this.timers = this.timers.filter(x => x.id !== id)
  }
  advance(ms: number): void {
    const end = this.t + ms
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at)
      const next = this.timers[0]
      if (next === undefined || next.at > end) break
      this.timers.shift()
      this.t = next.at
      next.fn()
    }
    this.t = end
  }
}

interface Sent {
  op: ProxyOp
  reply(r: UpstreamReply): void
  lose(err: Error): void
}

class FakePath implements QueuePath {
  readonly sent: Sent[] = []
  constructor(readonly epoch: number, readonly label = `node@epoch${epoch}`) {}
  send(op: ProxyOp): Promise<UpstreamReply> {
    return new Promise((resolve, reject) => this.sent.push({ op, reply: resolve, lose: reject }))
  }
  /** answer every request sent so far with success */
  ackAll(): void {
    for (const s of this.sent.splice(0)) s.reply({ errno: 0, data: s.op.kind === 'read' ? Buffer.alloc(s.op.length, 7) : Buffer.alloc(0) })
  }
}

const tick = () => new Promise(r => setImmediate(r))
const w = (offset: number, byte: number, len = 4096): ProxyOp => ({ kind: 'write', offset, data: Buffer.alloc(len, byte), fua: false })
const ids = (p: FakePath) => p.sent.map(s => (s.op.kind === 'write' ? s.op.data[0] : s.op.kind))

function setup(opts: { noPathRetry?: number; retryIntervalMs?: number; maxQueuedBytes?: number } = {}) {
  const clock = new FakeClock()
  const failed: string[] = []
  const pressure: boolean[] = []
  const q = new RequestQueue({
    noPathRetry: opts.noPathRetry ?? 3, retryIntervalMs: opts.retryIntervalMs ?? 100, maxQueuedBytes: opts.maxQueuedBytes ?? 1 << 20,
    clock, onPathFailed: (_p, reason) => failed.push(reason), onPressure: over => pressure.push(over),
  })
  return { q, clock, failed, pressure }
}

/** Track a promise's outcome without awaiting it. */
function track<T>(p: Promise<T>) {
  const s: { done: boolean; value?: T; err?: Error } = { done: false }
  p.then(v => Object.assign(s, { done: true, value: v }), (e: Error) => Object.assign(s, { done: true, err: e }))
  return s
}

t.test('client-queue - requests wait in order without a path and go out in that order when one attaches', async t => {
  const { q } = setup()
  const r = [1, 2, 3, 4].map(i => track(q.submit(w(i * 4096, i))))
  await tick()
  t.equal(q.stats().waiting, 4, 'all four wait')
  const p = new FakePath(1)
  q.attach(p)
  t.same(ids(p), [1, 2, 3, 4], 'sent in submission order')
  await tick()
  t.notOk(r.some(x => x.done), 'nothing is answered before the path answers')
  p.ackAll()
  await tick()
  t.ok(r.every(x => x.done && x.err === undefined), 'each answered once the path acknowledged it')
  t.equal(q.stats().items, 0)
})

t.test('client-queue - a lost path puts unanswered requests back in their places with a retry count and replays them in order to the next epoch', async t => {
  const { q } = setup()
  const p1 = new FakePath(1)
  q.attach(p1)
  const r = [1, 2, 3].map(i => track(q.submit(w(i * 4096, i))))
  // the first is acknowledged by p1, the others are in flight when it dies
  const first = p1.sent.shift() as Sent
  first.reply({ errno: 0 })
  await tick()
  t.ok(r[0]?.done, 'the acknowledged write is answered')
  q.detach(p1, 'connection reset')
  const later = track(q.submit(w(4 * 4096, 4)))
  t.same(q.list().map(i => [i.id, i.retries, i.state]), [[2, 1, 'queued'], [3, 1, 'queued'], [4, 0, 'queued']], 'retry counts and order')
  t.equal(q.stats().totalRetries, 2)
  // a late reply from the abandoned path is not an acknowledgement
  for (const s of p1.sent) s.reply({ errno: 0 })
  await tick()
  t.notOk(r[1]?.done || r[2]?.done, 'a reply from the old path after it was abandoned is ignored')
  const p2 = new FakePath(2)
  q.attach(p2)
  t.same(ids(p2), [2, 3, 4], 'replayed in the original order, then the new request')
  t.equal(q.stats().replayed, 2)
  p2.ackAll()
  await tick()
  t.ok(r.every(x => x.done && !x.err) && later.done && !later.err, 'everything answered by the new primary')
})

t.test('client-queue - a path of an older epoch than one seen is refused', async t => {
  const { q } = setup()
  const p3 = new FakePath(3)
  q.attach(p3)
  const r = track(q.submit(w(0, 1)))
  q.detach(p3, 'moved')
  t.throws(() => q.attach(new FakePath(2)), { code: 'ERR_FENCED' }, 'epoch 2 after epoch 3')
  t.equal(q.list()[0]?.firstEpoch, 3, 'the request remembers the epoch it was first sent to')
  const same = new FakePath(3, 'node@epoch3-again')
  q.attach(same)
  t.equal(same.sent.length, 1, 'replayed to a path of the same epoch')
  same.ackAll()
  await tick()
  t.ok(r.done && !r.err)
})

t.test('client-queue - without a path for noPathRetry × interval, queued requests fail with EIO; a working path ends the failing mode', async t => {
  const { q, clock } = setup({ noPathRetry: 3, retryIntervalMs: 100 })
  const p1 = new FakePath(1)
  q.attach(p1)
  const a = track(q.submit(w(0, 1)))
  q.detach(p1, 'gone')
  clock.advance(150)
  const b = track(q.submit(w(4096, 2)))
  clock.advance(149)
  await tick()
  t.notOk(a.done || b.done, 'still waiting at 299 ms')
  clock.advance(1)
  await tick()
  t.ok(a.done && b.done, 'both fail at 300 ms')
  t.equal(a.err && (a.err as { code?: string }).code, 'ERR_NO_PRIMARY')
  t.equal(nbdErrno(a.err), Errno.EIO, 'the client sees EIO')
  t.equal(q.stats().failing, true)
  t.equal(q.stats().failedNoPath, 2)
  const c = track(q.submit(w(0, 3)))
  await tick()
  t.ok(c.done && c.err, 'while failing and with no path, a new request fails at once')
  // a path comes back and answers: queueing resumes
  const p2 = new FakePath(2)
  q.attach(p2)
  const d = track(q.submit(w(0, 4)))
  p2.ackAll()
  await tick()
  t.ok(d.done && !d.err)
  t.equal(q.stats().failing, false)
  q.detach(p2, 'gone again')
  const e = track(q.submit(w(0, 5)))
  clock.advance(299)
  await tick()
  t.notOk(e.done, 'queues again after a primary answered')
  clock.advance(1)
  await tick()
  t.ok(e.done && e.err, 'and the bound counts from the new loss')
})

t.test('client-queue - noPathRetry 0 fails at once; Infinity queues forever', async t => {
  const zero = setup({ noPathRetry: 0 })
  const p = new FakePath(1)
  zero.q.attach(p)
  const a = track(zero.q.submit(w(0, 1)))
  zero.q.detach(p, 'gone')
  await tick()
  t.ok(a.done && a.err, 'in-flight request fails with the path')
  t.equal(nbdErrno(a.err), Errno.EIO)

  const forever = setup({ noPathRetry: Infinity })
  const p2 = new FakePath(1)
  forever.q.attach(p2)
  const b = track(forever.q.submit(w(0, 1)))
  forever.q.detach(p2, 'gone')
  forever.clock.advance(24 * 3600 * 1000)
  await tick()
  t.notOk(b.done, 'still queued after a day')
  const p3 = new FakePath(5)
  forever.q.attach(p3)
  p3.ackAll()
  await tick()
  t.ok(b.done && !b.err, 'answered when a primary comes back')
  t.equal(forever.q.stats().noPathRetry, 'queue')
})

t.test('client-queue - a path errno (EPERM) re-queues and reports the path; other errnos are the answer', async t => {
  const { q, failed } = setup()
  const p = new FakePath(1)
  q.attach(p)
  const a = track(q.submit(w(0, 1)))
  const b = track(q.submit({ kind: 'read', offset: 1 << 40, length: 512 }))
  const [sa, sb] = p.sent
  sb?.reply({ errno: Errno.EINVAL })
  await tick()
  t.ok(b.done && b.err, 'EINVAL goes back to the client')
  t.equal(nbdErrno(b.err), Errno.EINVAL, 'with its errno')
  sa?.reply({ errno: Errno.EPERM })
  await tick()
  t.notOk(a.done, 'a write refused by a demoted node is not failed')
  t.equal(failed.length, 1, 'the owner is told to drop the path')
  t.match(failed[0], /errno 1/)
  t.equal(q.currentPath, null, 'the queue stopped using that path')
  t.equal(q.list()[0]?.retries, 1)
  const p2 = new FakePath(2)
  q.attach(p2)
  p2.ackAll()
  await tick()
  t.ok(a.done && !a.err, 'acknowledged by the next primary')
})

t.test('client-queue - a lost connection (send rejects) re-queues the request', async t => {
  const { q, failed } = setup()
  const p = new FakePath(1)
  q.attach(p)
  const a = track(q.submit(w(0, 1)))
  p.sent[0]?.lose(new Error('socket closed'))
  await tick()
  t.notOk(a.done)
  t.equal(failed.length, 1)
  t.equal(q.stats().waiting, 1)
})

t.test('client-queue - queued bytes past the limit turn back-pressure on, and off once answered', async t => {
  const { q, pressure } = setup({ maxQueuedBytes: 3 * 4096 })
  q.submit(w(0, 1)).catch(() => {})
  q.submit(w(4096, 2)).catch(() => {})
  t.equal(q.overLimit, false)
  q.submit(w(8192, 3)).catch(() => {})
  t.equal(q.overLimit, true, 'at the limit')
  t.same(pressure, [true])
  t.equal(q.stats().bytes, 3 * 4096)
  const p = new FakePath(1)
  q.attach(p)
  p.ackAll()
  await tick()
  t.equal(q.overLimit, false)
  t.same(pressure, [true, false])
})

t.test('client-queue - an idle proxy whose path drops starts the bound at the drop, not at start-up', async t => {
  const { q, clock } = setup({ noPathRetry: 2, retryIntervalMs: 100 })
  const p = new FakePath(1)
  clock.advance(10_000)
  q.attach(p)
  clock.advance(10_000)
  const a = track(q.submit(w(0, 1)))
  q.detach(p, 'gone')
  await tick()
  t.notOk(a.done, 'not failed at once')
  clock.advance(200)
  await tick()
  t.ok(a.done && a.err, 'failed after 2 × 100 ms')
})

t.test('client-queue - status shows items, retries and the oldest age', async t => {
  const { q, clock } = setup()
  const p = new FakePath(4)
  q.attach(p)
  q.submit(w(0, 1)).catch(() => {})
  clock.advance(50)
  q.submit({ kind: 'flush' }).catch(() => {})
  q.detach(p, 'x')
  clock.advance(25)
  const s = q.stats()
  t.equal(s.items, 2)
  t.equal(s.waiting, 2)
  t.equal(s.oldestAgeMs, 75)
  t.equal(s.maxRetries, 1)
  t.equal(s.path, null)
  t.equal(s.noPathForMs, 25)
  t.same(q.list().map(i => i.kind), ['write', 'flush'])
  t.throws(() => setup({ noPathRetry: -1 }), { code: 'ERR_USAGE' })
})
