import t from 'tap'
import fc from 'fast-check'
import { GroupCommit } from '../src/replication/group-commit.js'
import { InFlight } from '../src/replication/in-flight.js'
import { property } from './helpers/property.js'

/** A sync the test completes by hand: the world (storage) passed in. */
class FakeSync {
  calls = 0
  running = 0
  maxRunning = 0
  private pending: { resolve: () => void; reject: (e: Error) => void }[] = []
  readonly fn = (): Promise<void> => {
    this.calls++
    this.running++
    this.maxRunning = Math.max(this.maxRunning, this.running)
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }))
  }
  get waiting(): number {
    return this.pending.length
  }
  finish(err?: Error): void {
    const p = this.pending.shift()
    if (!p) throw new Error('no sync in flight')
    this.running--
    if (err) p.reject(err)
    else p.resolve()
  }
}

const tick = () => new Promise((r) => setImmediate(r))

function tracker(p: Promise<void>): { done: boolean; err: Error | null } {
  const s = { done: false, err: null as Error | null }
  p.then(() => (s.done = true), (e: Error) => (s.err = e))
  return s
}

t.test('group-commit - one sync covers every seq appended before it started; later seqs wait for the next', async (t) => {
  const sync = new FakeSync()
  let head = 0
  const gc = new GroupCommit(sync.fn, () => head, 0)
  head = 3
  const a = tracker(gc.wait(1))
  const b = tracker(gc.wait(3))
  await tick()
  t.equal(sync.calls, 1, 'one sync for both waiters')
  head = 5
  const c = tracker(gc.wait(5))
  await tick()
  t.equal(sync.calls, 1, 'no second sync while one runs')
  sync.finish()
  await tick()
  t.same([a.done, b.done, c.done], [true, true, false], 'the sync covered seqs up to 3 (head when it started), not 5')
  t.equal(sync.calls, 2, 'the next sync starts for the remaining waiter')
  sync.finish()
  await tick()
  t.ok(c.done, 'seq 5 durable after the second sync')
  t.equal(gc.durableSeq, 5)
  t.equal(sync.maxRunning, 1, 'never two syncs at once')
  t.equal(await gc.wait(2).then(() => 'now'), 'now', 'a seq already durable resolves at once')
})

t.test('group-commit - a failed sync rejects every waiter and every later wait (no ack after a failed fdatasync)', async (t) => {
  const sync = new FakeSync()
  const gc = new GroupCommit(sync.fn, () => 2, 0)
  const a = tracker(gc.wait(1))
  const b = tracker(gc.wait(2))
  await tick()
  sync.finish(new Error('EIO'))
  await tick()
  t.match([a.err?.message, b.err?.message], ['EIO', 'EIO'])
  await t.rejects(gc.wait(3), /EIO/, 'the failure is sticky')
})

t.test('group-commit - reset: a sync in flight for the old head does not make the new seqs durable', async (t) => {
  const sync = new FakeSync()
  let head = 10
  const gc = new GroupCommit(sync.fn, () => head, 0)
  const a = tracker(gc.wait(10))
  await tick()
  gc.reset(4)
  t.ok(a.done === false, 'seq 10 is not durable by a reset to 4')
  head = 6
  const b = tracker(gc.wait(6))
  sync.finish()
  await tick()
  t.notOk(b.done, 'the old sync (started at head 10 before the reset) does not count')
  sync.finish()
  await tick()
  t.ok(b.done, 'a sync after the reset does')
})

t.test('group-commit - with a delay, writes join one sync; maxBatchBytes starts it early', async (t) => {
  const sync = new FakeSync()
  let head = 1
  const gc = new GroupCommit(sync.fn, () => head, 0, 50, 8192)
  void gc.wait(1)
  head = 2
  void gc.wait(2)
  await tick()
  t.equal(sync.calls, 0, 'waiting for more writes to join')
  gc.noteAppended(4096)
  await tick()
  t.equal(sync.calls, 0, 'still under maxBatchBytes')
  gc.noteAppended(4096)
  await tick()
  t.equal(sync.calls, 1, 'maxBatchBytes reached: sync at once')
  sync.finish()
})

t.test('group-commit - model: random appends, waits and sync completions never resolve a seq before a sync that started after it', async (t) => {
  type Op = { op: 'append' } | { op: 'wait'; back: number } | { op: 'finish' } | { op: 'fail' }
  const op = fc.oneof(
    { weight: 4, arbitrary: fc.constant<Op>({ op: 'append' }) },
    { weight: 4, arbitrary: fc.nat(3).map((back): Op => ({ op: 'wait', back })) },
    { weight: 3, arbitrary: fc.constant<Op>({ op: 'finish' }) },
    { weight: 1, arbitrary: fc.constant<Op>({ op: 'fail' }) },
  )
  await property(t, 'group commit model', fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
    const starts: number[] = [] // head captured by each sync start
    let head = 0
    let truly = 0 // highest seq a completed sync really covered
    let failed = false
    const sync = new FakeSync()
    const gc = new GroupCommit(() => {
      starts.push(head)
      return sync.fn()
    }, () => head, 0)
    const waits: { seq: number; s: ReturnType<typeof tracker> }[] = []
    const check = (): void => {
      for (const w of waits) {
        if (w.s.done && w.seq > truly) throw new Error(`seq ${w.seq} acknowledged durable; only ${truly} was synced`)
        if (w.s.err && !failed) throw new Error(`seq ${w.seq} rejected without a failed sync`)
      }
    }
    for (const o of ops) {
      if (o.op === 'append') head++
      else if (o.op === 'wait') waits.push({ seq: Math.max(0, head - o.back), s: tracker(gc.wait(Math.max(0, head - o.back))) })
      else if (sync.waiting > 0) {
        const covered = starts[sync.calls - sync.waiting]!
        if (o.op === 'fail') {
          failed = true
          sync.finish(new Error('EIO'))
        } else {
          sync.finish()
          truly = Math.max(truly, covered)
        }
      }
      await tick()
      check()
    }
    // drain: every waiter ends (durable or rejected after a failure)
    while (sync.waiting > 0) {
      const covered = starts[sync.calls - sync.waiting]!
      sync.finish()
      truly = Math.max(truly, covered)
      await tick()
      check()
    }
    for (const w of waits) if (!w.s.done && !w.s.err) throw new Error(`seq ${w.seq} still waiting with no sync in flight`)
    if (sync.maxRunning > 1) throw new Error('two syncs ran at once')
  }), 200)
})

t.test('in-flight - the window frees on ack, waiters wake at their seq, clear releases everyone', async (t) => {
  const f = new InFlight()
  f.sent(1, 100)
  f.sent(2, 200)
  f.sent(3, 300)
  t.equal(f.bytes, 600)
  const w2 = tracker(f.waitFor(2))
  const w3 = tracker(f.waitFor(3))
  f.acked(2)
  await tick()
  t.equal(f.bytes, 300, 'acked seqs leave the window')
  t.same([w2.done, w3.done], [true, false], 'only the acknowledged waiter wakes')
  f.acked(1)
  t.equal(f.bytes, 300, 'an older ack changes nothing')
  const w4 = tracker(f.waitFor(4))
  f.clear()
  await tick()
  t.same([w3.done, w4.done, f.bytes], [true, true, 0], 'a dropped connection releases every waiter (degraded to local durability)')
})

t.test('group-commit - a sync that throws at once (journal closed) rejects the waiters instead of escaping as an unhandled rejection', async (t) => {
  let head = 1
  let calls = 0
  const closed = new Error('journal is closed')
  // the first sync succeeds; the one the second waiter kicks throws synchronously, as Journal.sync does once closed
  const gc = new GroupCommit(() => {
    calls++
    if (calls === 1) return new Promise<void>((resolve) => setTimeout(resolve, 5))
    throw closed
  }, () => head, 0)
  const unhandled: unknown[] = []
  const onUnhandled = (err: unknown): void => void unhandled.push(err)
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => void process.off('unhandledRejection', onUnhandled))
  const first = gc.wait(1)
  head = 2
  const second = gc.wait(2)
  await first
  await t.rejects(second, closed, 'the waiter learns the sync failed')
  await new Promise((r) => setTimeout(r, 20))
  t.same(unhandled, [], 'nothing escaped as an unhandled rejection')
})
