import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LeaseClock, decideWrite, extendLease, parseGrant } from '../src/agent/lease.js'
import type { LeaseGrant, WriteSnapshot } from '../src/agent/lease.js'
import { LeaseGuard } from '../src/agent/lease-guard.js'
import { controlStatePath, loadControlState, saveControlState, emptyControlState } from '../src/agent/control-state.js'
import { FailsafeAsker, FailsafeTracker } from '../src/replication/failsafe.js'
import { EpochFence } from '../src/replication/epoch-fence.js'
import type { ReplicationNode } from '../src/replication/replication-node.js'
import type { BlockrepError } from '../src/util/errors.js'
import { silentLogger } from '../src/util/log.js'
import { nbdErrno } from '../src/nbd/errno.js'
import { Errno } from '../src/nbd/constants.js'

const grant = (over: Partial<LeaseGrant> = {}): LeaseGrant => ({ controller: 'ctl/1', term: 1, epoch: 1, leaseMs: 2000, sentAtMs: 0, ...over })

t.test('lease - the first grant counts from the controller send time plus the observed offset, minus the margin', async (t) => {
  const lc = new LeaseClock(500)
  // controller clock 1000 at send, agent clock 50_030 at receipt: offset 49_030 (skew + 30 ms delay)
  t.equal(lc.expiryOf(grant({ sentAtMs: 1000 }), 50_030), 1000 + 49_030 + 2000 - 500)
  t.equal(lc.offsetOf('ctl/1'), 49_030)
})

t.test('lease - a faster grant lowers the offset; a grant delayed in the network never extends past what the controller counted', async (t) => {
  const lc = new LeaseClock(500)
  lc.expiryOf(grant({ sentAtMs: 1000 }), 50_030) // offset 49_030
  // a quicker delivery (10 ms): the offset drops to 49_010 and stays there
  t.equal(lc.expiryOf(grant({ sentAtMs: 2000 }), 51_010), 2000 + 49_010 + 1500)
  t.equal(lc.offsetOf('ctl/1'), 49_010)
  // sent at 3000 but held 5 s in the network: expiry 3000 + 49_010 + 1500 = 53_510, already past at 57_010
  const late = lc.expiryOf(grant({ sentAtMs: 3000 }), 57_010)
  t.equal(late, 53_510)
  t.ok(late < 57_010, 'a stale grant arriving late yields an already-expired lease')
  t.equal(lc.offsetOf('ctl/1'), 49_010, 'a slow grant does not raise the offset')
})

t.test('lease - offsets are kept per controller instance', async (t) => {
  const lc = new LeaseClock(0)
  lc.expiryOf(grant({ controller: 'a', sentAtMs: 0 }), 100)
  lc.expiryOf(grant({ controller: 'b', sentAtMs: 0 }), 7000)
  t.equal(lc.offsetOf('a'), 100)
  t.equal(lc.offsetOf('b'), 7000)
})

t.test('lease - out-of-order grants: the later expiry wins', async (t) => {
  const a = extendLease(null, grant(), 5000)
  t.equal(a.expiresAt, 5000)
  t.equal(extendLease(a, grant(), 4000).expiresAt, 5000, 'an older grant arriving after a newer one does not shorten the lease')
  t.equal(extendLease(a, grant(), 6000).expiresAt, 6000)
})

t.test('lease - decideWrite, as a table', async (t) => {
  const lease = { holder: 'ctl/1', term: 1, leaseMs: 2000, expiresAt: 1000 }
  const base: WriteSnapshot = { now: 500, controlled: true, fenced: null, lease, failsafeUntil: null }
  const rows: [string, Partial<WriteSnapshot>, string][] = [
    ['not controlled: writes need no lease', { controlled: false, lease: null }, 'uncontrolled'],
    ['valid lease', {}, 'lease'],
    ['lease ends exactly now: refused', { now: 1000 }, 'ERR_LEASE_EXPIRED'],
    ['lease expired, no failsafe', { now: 1500 }, 'ERR_LEASE_EXPIRED'],
    ['lease expired, failsafe holds', { now: 1500, failsafeUntil: 1600 }, 'failsafe'],
    ['lease expired, failsafe ended', { now: 1700, failsafeUntil: 1600 }, 'ERR_LEASE_EXPIRED'],
    ['controlled, no lease since start', { lease: null }, 'ERR_LEASE_EXPIRED'],
    ['no lease, failsafe confirmations (the tracker gives none before a first grant sets its window)', { lease: null, failsafeUntil: 2000 }, 'failsafe'],
    ['fenced beats a valid lease', { fenced: 'newer epoch 5 seen at peer b' }, 'ERR_FENCED'],
    ['fenced beats not being controlled', { fenced: 'x', controlled: false }, 'ERR_FENCED'],
  ]
  for (const [name, over, want] of rows) {
    const v = decideWrite({ ...base, ...over })
    t.equal(v.ok ? v.via : v.code, want, name)
  }
})

t.test('lease - parseGrant names the bad field', async (t) => {
  t.same(parseGrant({ controller: 'c', term: 1, epoch: 2, leaseMs: 100, sentAtMs: 5.5 }, 'lease'), { controller: 'c', term: 1, epoch: 2, leaseMs: 100, sentAtMs: 5.5 })
  for (const [field, body] of [
    ['controller', { term: 1, epoch: 1, leaseMs: 1, sentAtMs: 1 }],
    ['term', { controller: 'c', term: -1, epoch: 1, leaseMs: 1, sentAtMs: 1 }],
    ['epoch', { controller: 'c', term: 1, epoch: 1.5, leaseMs: 1, sentAtMs: 1 }],
    ['leaseMs', { controller: 'c', term: 1, epoch: 1, leaseMs: 0, sentAtMs: 1 }],
    ['sentAtMs', { controller: 'c', term: 1, epoch: 1, leaseMs: 1, sentAtMs: 'x' }],
  ] as const) {
    t.throws(() => parseGrant(body as Record<string, unknown>, 'lease'), { code: 'ERR_USAGE', context: { field } }, field)
  }
})

t.test('failsafe - every standby must confirm; the earliest confirmation bounds writability', async (t) => {
  let now = 0
  const fs = new FailsafeTracker(() => now, 500, () => ['b', 'c'])
  fs.windowMs = 2000
  t.equal(fs.validUntil(), null, 'nothing confirmed')
  fs.onConfirm('b', 100, true, 2000)
  t.equal(fs.validUntil(), null, 'c has not confirmed')
  fs.onConfirm('c', 300, true, 2000)
  t.equal(fs.validUntil(), 100 + 2000 - 500, 'min over standbys of t + window − margin')
  fs.onConfirm('b', 400, true, 2000)
  t.equal(fs.validUntil(), 300 + 1500)
  now = 1000
  t.same(fs.confirmedBy(), ['b', 'c'])
  fs.onConfirm('c', 900, false, 2000)
  t.equal(fs.validUntil(), null, 'a refusal withdraws the standby confirmation')
  fs.onConfirm('c', 950, true, 2000)
  fs.forget('b')
  t.equal(fs.validUntil(), null, 'a dropped link counts as unconfirmed')
})

t.test('failsafe - no standbys, or failsafe off: never writable by the failsafe', async (t) => {
  const fs = new FailsafeTracker(() => 0, 500, () => [])
  fs.windowMs = 2000
  t.equal(fs.validUntil(), null)
  const off = new FailsafeTracker(() => 0, 500, () => ['b'])
  off.onConfirm('b', 0, true, 2000)
  t.equal(off.validUntil(), null, 'windowMs 0 (no grant yet) disables it')
})

t.test('failsafe - a standby that confirmed holds a promotion back until its last confirmation + window, and stops confirming', async (t) => {
  let now = 10_000
  const fs = new FailsafeTracker(() => now, 500, () => [])
  t.equal(fs.confirm(4, 2000, 4, true), true, 'same epoch, standby: promised')
  now = 10_700
  t.equal(fs.confirm(4, 2000, 4, true), true)
  t.equal(fs.hold, 12_700)
  t.equal(fs.confirm(3, 2000, 4, true), false, 'a primary in an older epoch gets no promise')
  t.equal(fs.confirm(4, 2000, 4, false), false, 'a primary gives no promise')
  now = 11_000
  t.equal(fs.beginPromotion(), 1700, 'waits the rest of the window')
  t.equal(fs.confirm(4, 2000, 4, true), false, 'no promise once a promotion is requested')
  t.equal(fs.hold, 12_700, 'a refused request does not move the hold')
  fs.endPromotion()
  // timing inequality: the old primary sent at t ≤ 10_700 → writable until ≤ 12_200 (its clock, same rate) < 12_700
})

/** A ReplicationNode stand-in: what the guard reads and calls. */
function fakeNode(opts: { role?: 'primary' | 'standby'; epoch?: number; now: () => number; peers?: string[] }) {
  const links = new Map<string, { nodeId: string; ackedSeq: () => number }>()
  const acked = new Map<string, number>()
  for (const p of opts.peers ?? []) {
    acked.set(p, 0)
    links.set(p, { nodeId: p, ackedSeq: () => acked.get(p)! })
  }
  const node = {
    role: opts.role ?? 'primary',
    store: { epoch: opts.epoch ?? 1, meta: { nodeId: 'a' }, journal: { headSeq: 10 } },
    failsafe: new FailsafeTracker(opts.now, 500, () => opts.peers ?? []),
    links,
    epochs: new EpochFence(silentLogger()),
    get fenced() {
      return this.epochs.fenced
    },
    writeGate: null as null | (() => BlockrepError | null),
    ackGate: null as null | ((seq: number) => BlockrepError | null),
    knownEpoch() {
      return this.epochs.known(this.store.epoch)
    },
    noteEpoch(epoch: number, reason: string) {
      return this.epochs.note(epoch, reason, this.store.epoch, this.role === 'primary')
    },
    async promote() {
      if (this.role === 'primary') return { epoch: this.store.epoch, alreadyPrimary: true }
      this.role = 'primary'
      this.store.epoch = this.knownEpoch() + 1
      return { epoch: this.store.epoch }
    },
    async demote() {
      if (this.role === 'standby') return { alreadyStandby: true }
      this.role = 'standby'
      this.epochs.fenced = null
      return { alreadyStandby: false }
    },
  }
  return { node, acked }
}

function setup(t: { teardown(fn: () => unknown): void }, opts: { role?: 'primary' | 'standby'; epoch?: number; peers?: string[]; stateDir?: string } = {}) {
  const dir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'blockrep-lease-'))
  if (!opts.stateDir) t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const clock = { now: 100_000 }
  const { node, acked } = fakeNode({ ...opts, now: () => clock.now })
  const statePath = controlStatePath(join(dir, 'a.img.meta'))
  const guard = new LeaseGuard({ node: node as unknown as ReplicationNode, statePath, marginMs: 500, failsafeMs: 0, now: () => clock.now, log: silentLogger() })
  const write = () => node.writeGate!()?.code ?? 'ok'
  return { dir, clock, node, acked, guard, statePath, write }
}

t.test('lease guard - uncontrolled writes freely; a grant takes the node over, persisted, and writes stop at expiry on the agent clock', async (t) => {
  const { clock, guard, statePath, write } = setup(t)
  t.equal(write(), 'ok', 'not controlled')
  const res = await guard.lease({ controller: 'ctl/1', term: 1, epoch: 1, leaseMs: 2000, sentAtMs: 5 })
  t.same(res.lease, { validForMs: 1500, holder: 'ctl/1' }, 'first grant: valid for leaseMs − margin')
  t.equal(loadControlState(statePath).controlled, true, 'control persisted')
  clock.now += 1499
  t.equal(write(), 'ok')
  clock.now += 1
  t.equal(write(), 'ERR_LEASE_EXPIRED', 'refused at renewal + lease − margin')
  t.equal(guard.status().writable, false)
  // renewal: controller clock advanced by the same 1500 ms
  await guard.lease({ controller: 'ctl/1', term: 1, epoch: 1, leaseMs: 2000, sentAtMs: 1505 })
  t.equal(write(), 'ok', 'renewed')
  await guard.release()
  clock.now += 10_000
  t.equal(write(), 'ok', 'released: no lease needed')
  t.equal(loadControlState(statePath).controlled, false)
})

t.test('lease guard - a restarted controlled primary starts fenced until its first grant', async (t) => {
  const first = setup(t)
  await first.guard.lease({ controller: 'ctl/1', term: 3, epoch: 1, leaseMs: 2000, sentAtMs: 0 })
  const again = setup(t, { stateDir: first.dir })
  t.equal(again.write(), 'ERR_LEASE_EXPIRED', 'no write after the restart')
  t.equal(again.guard.status().controlled, true)
  t.equal(again.guard.status().term, 3)
  await t.rejects(again.guard.lease({ controller: 'ctl/old', term: 2, epoch: 1, leaseMs: 2000, sentAtMs: 0 }), { code: 'ERR_NOT_LEADER' }, 'a lower term is refused')
  await again.guard.lease({ controller: 'ctl/2', term: 4, epoch: 1, leaseMs: 2000, sentAtMs: 0 })
  t.equal(again.write(), 'ok')
})

t.test('lease guard - grant checks: stale epoch, not primary, newer epoch known', async (t) => {
  const s = setup(t, { epoch: 4 })
  await t.rejects(s.guard.lease({ controller: 'c', term: 1, epoch: 3, leaseMs: 2000, sentAtMs: 0 }), { code: 'ERR_FENCED' }, 'the node knows a newer epoch than granted')
  t.equal(s.node.fenced, null, 'an old grant does not fence the node')
  await t.rejects(s.guard.lease({ controller: 'c', term: 1, epoch: 5, leaseMs: 2000, sentAtMs: 0 }), { code: 'ERR_STALE_EPOCH' }, 'epoch ≠ current')
  t.equal(s.node.fenced?.epoch, 5, 'a controller naming a newer epoch fences the primary')
  t.equal(s.write(), 'ERR_FENCED')
  t.equal(loadControlState(s.statePath).fenced?.epoch, 5, 'the fence is persisted')
  const sb = setup(t, { role: 'standby', epoch: 4 })
  await t.rejects(sb.guard.lease({ controller: 'c', term: 1, epoch: 4, leaseMs: 2000, sentAtMs: 0 }), { code: 'ERR_STALE_EPOCH' }, 'a standby gets no lease')
})

t.test('lease guard - a fenced primary stays fenced across a restart; demote lifts it', async (t) => {
  const s = setup(t, { epoch: 1 })
  s.node.noteEpoch(2, 'newer epoch 2 seen at peer b')
  t.equal(s.write(), 'ERR_FENCED')
  const again = setup(t, { stateDir: s.dir, epoch: 1 })
  t.equal(again.write(), 'ERR_FENCED', 'restart: still fenced')
  t.equal(again.node.epochs.newestSeen, 2)
  t.match(again.guard.status().fenced, { epoch: 2, reason: /peer b/ })
  const d = await again.guard.demote({ controller: 'ctl/1' })
  t.same(d, { ok: true, alreadyStandby: false })
  t.equal(loadControlState(s.statePath).fenced, null)
  t.same(await again.guard.demote({}), { ok: true, alreadyStandby: true })
  // promoted again later: numbered above the epoch it learned of
  const p = await again.guard.promote({ controller: 'ctl/1', expectEpoch: 1, lease: { term: 1, leaseMs: 2000, sentAtMs: 0 } })
  t.equal(p.epoch, 3)
  t.equal(again.write(), 'ok', 'the promote carried a lease')
})

t.test('lease guard - promote checks expectEpoch and answers alreadyPrimary', async (t) => {
  const s = setup(t, { role: 'standby', epoch: 4 })
  await t.rejects(s.guard.promote({ controller: 'c', expectEpoch: 3 }), { code: 'ERR_STALE_EPOCH' })
  t.equal(s.node.role, 'standby', 'nothing changed')
  const r = await s.guard.promote({ controller: 'c', expectEpoch: 4, lease: { term: 1, leaseMs: 2000, sentAtMs: 0 } })
  t.match(r, { epoch: 5, alreadyPrimary: false, lease: { holder: 'c' } })
  t.equal(loadControlState(s.statePath).controlled, true, 'a controlled promote takes the node over')
  await t.rejects(s.guard.promote({ controller: 'c', expectEpoch: 4 }), { code: 'ERR_STALE_EPOCH' }, 'already primary, in another epoch than expected')
  t.match(await s.guard.promote({ controller: 'c', expectEpoch: 5 }), { epoch: 5, alreadyPrimary: true })
  await t.rejects(s.guard.promote({ force: 'yes' }), { code: 'ERR_USAGE' })
})

t.test('lease guard - failsafe keeps a lease-less primary writable only while every standby confirms, and acks only what every standby holds', async (t) => {
  const s = setup(t, { peers: ['b'] })
  await s.guard.lease({ controller: 'c', term: 1, epoch: 1, leaseMs: 2000, sentAtMs: 0 })
  t.equal(s.node.failsafe.enabled, true, 'controlled: the links ask for confirmations')
  t.equal(s.node.failsafe.windowMs, 2000, 'failsafeMs 0: the grant leaseMs')
  s.clock.now += 1000
  // b confirms a FAILSAFE the primary sent now: writable until now + 2000 − 500
  s.node.failsafe.onConfirm('b', s.clock.now, true, 2000)
  t.equal(s.guard.status().failsafe.active, false, 'the lease still holds: the failsafe is not what allows writes')
  s.clock.now += 600
  t.equal(s.guard.status().lease?.valid, false, 'lease expired')
  t.equal(s.write(), 'ok', 'the failsafe holds')
  t.equal(s.guard.status().failsafe.active, true)
  t.same(s.guard.status().failsafe.confirmedBy, ['b'])
  t.equal(s.node.ackGate!(5)?.code, 'ERR_LEASE_EXPIRED', 'under the failsafe a write b has not acked is not acknowledged')
  s.acked.set('b', 5)
  t.equal(s.node.ackGate!(5), null, 'acked by every standby: acknowledged')
  s.clock.now += 1000
  t.equal(s.write(), 'ERR_LEASE_EXPIRED', 'confirmations stopped: writes stop when the last one runs out')
})

t.test('control state - atomic save and load; a damaged file is refused by name, not guessed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blockrep-cs-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const p = join(dir, 'x.meta.control.json')
  t.same(loadControlState(p), emptyControlState(), 'missing: never controlled')
  const s = { ...emptyControlState(), controlled: true, controller: 'c', term: 2, since: 5, knownEpoch: 3, fenced: { epoch: 3, reason: 'r', since: 7 } }
  saveControlState(p, s)
  t.same(loadControlState(p), s)
  writeFileSync(p, '{"version":1,"controlled":tr')
  t.throws(() => loadControlState(p), { code: 'ERR_META_CORRUPT' })
  writeFileSync(p, '{"version":9,"controlled":true}')
  t.throws(() => loadControlState(p), { code: 'ERR_META_CORRUPT', message: /version/ })
})

t.test('errno - a refused write under a lease is EPERM (nothing written); a durable write that lost its lease is EIO', async (t) => {
  const { BlockrepError: E } = await import('../src/util/errors.js')
  t.equal(nbdErrno(new E('ERR_LEASE_EXPIRED', 'x')), Errno.EPERM)
  t.equal(nbdErrno(new E('ERR_FENCED', 'x')), Errno.EPERM)
  t.equal(nbdErrno(new E('ERR_IO', 'durable but not acknowledged')), Errno.EIO)
})

t.test('failsafe - a link asks while enabled and counts only answers to requests it sent, with the window each asked for', async (t) => {
  let now = 5000
  const fs = new FailsafeTracker(() => now, 500, () => ['b'])
  const asker = new FailsafeAsker(fs, 'b', 100)
  const sent: { t: number; epoch: number; windowMs: number }[] = []
  let closed = false
  asker.start((m) => sent.push(m), () => 3, () => closed)
  t.same(sent, [], 'disabled: nothing sent')
  fs.enabled = true
  fs.windowMs = 2000
  await new Promise((r) => setTimeout(r, 250))
  t.ok(sent.length >= 1, `sent while enabled (${sent.length})`)
  t.match(sent[0], { type: 'FAILSAFE', t: 5000, epoch: 3, windowMs: 2000 })
  asker.answer({ type: 'FAILSAFE_OK', t: 4999, epoch: 3, promised: true }, 3)
  t.equal(fs.validUntil(), null, 'an answer to a request never sent counts for nothing')
  asker.answer({ type: 'FAILSAFE_OK', t: 5000, epoch: 4, promised: true }, 3)
  t.equal(fs.validUntil(), null, 'an answer naming a newer epoch is no promise')
  now = 5100
  fs.windowMs = 1000
  await new Promise((r) => setTimeout(r, 150))
  asker.answer({ type: 'FAILSAFE_OK', t: 5100, epoch: 3, promised: true }, 3)
  t.equal(fs.validUntil(), 5100 + 1000 - 500, 'the window of that request')
  closed = true
  asker.stop()
  t.equal(fs.validUntil(), null, 'session over: confirmation withdrawn')
  const n = sent.length
  await new Promise((r) => setTimeout(r, 250))
  t.equal(sent.length, n, 'and nothing more is sent')
})
