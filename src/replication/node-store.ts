import { existsSync, rmSync, statSync } from 'node:fs'
import { Volume } from '../storage/volume.js'
import { Journal, replayJournal } from '../storage/journal.js'
import { MetadataStore, emptyPeerMeta } from '../storage/metadata.js'
import { locks } from '../storage/lock.js'
import { preallocate } from '../storage/preallocate.js'
import { bitmaps } from '../storage/bitmaps.js'
import type { NodeMeta, PeerMeta, VolumeLock } from '../storage/types.js'
import type { WireMeta } from '../wire/messages.js'
import { BlockrepError } from '../util/errors.js'

export interface StorePaths {
  data: string
  meta: string
  journal: string
}

export interface InitOptions extends StorePaths {
  nodeId: string
  size: number
  blockSize: number
  journalSize: number
  role: 'primary' | 'standby'
  /** a standby without one adopts the primary's on its first FULL sync */
  volumeId: string
}

/** Default metadata/journal paths next to the data file. */
export function defaultPaths(data: string, meta?: string, journal?: string): StorePaths {
  return { data, meta: meta ?? `${data}.meta`, journal: journal ?? `${data}.journal` }
}

/**
 * One node's storage: data volume, journal, metadata and the exclusive lock,
 * opened and recovered together. The head pointer comes from the journal
 * (invariant 3); journaled records are replayed onto the data (write-ahead).
 */
export class NodeStore {
  meta: NodeMeta
  /** the metadata file failed its checksum in both slots: never trusted, reported in META */
  metaCorrupt: boolean
  readonly recovery: { replayed: number; droppedTornBytes: number; metaFellBack: boolean; metaProblem: string | null }

  private constructor(
    readonly paths: StorePaths,
    readonly volume: Volume,
    readonly journal: Journal,
    private readonly metaStore: MetadataStore,
    private readonly lock: VolumeLock,
    meta: NodeMeta,
    metaCorrupt: boolean,
    recovery: NodeStore['recovery'],
  ) {
    this.meta = meta
    this.metaCorrupt = metaCorrupt
    this.recovery = recovery
  }

  /** Creates data, journal and metadata for a new node (or validates existing ones of the same geometry). */
  static init(opts: InitOptions, warnings: string[] = []): NodeMeta {
    const lock = locks().acquire(opts.data)
    try {
      if (existsSync(opts.meta)) {
        const { store, load } = MetadataStore.open(opts.meta)
        store.close()
        if (!load.ok) throw new BlockrepError('ERR_META_CORRUPT', `metadata ${opts.meta} is corrupt: ${load.reason}`, { context: { path: opts.meta } })
        const m = load.meta
        for (const [k, want] of [['size', opts.size], ['blockSize', opts.blockSize], ['nodeId', opts.nodeId]] as const) {
          if (m[k] !== want) {
            throw new BlockrepError('ERR_META_MISMATCH', `${opts.meta} already holds ${k}=${m[k]}, not ${want}`, { context: { path: opts.meta, field: k, existing: m[k], wanted: want } })
          }
        }
        if (opts.volumeId && m.volumeId && m.volumeId !== opts.volumeId) {
          throw new BlockrepError('ERR_META_MISMATCH', `${opts.meta} belongs to volume ${m.volumeId}, not ${opts.volumeId}`, { context: { path: opts.meta } })
        }
        Volume.open(opts.data, { blockSize: opts.blockSize, size: opts.size }).close()
        return m
      }
      const created: string[] = []
      try {
        for (const f of [opts.data, opts.journal]) if (!existsSync(f)) created.push(f)
        Volume.open(opts.data, { blockSize: opts.blockSize, size: opts.size, create: true }).close()
        Journal.open(opts.journal, { size: opts.journalSize, create: true }).close()
        for (const [f, n] of [[opts.data, opts.size], [opts.journal, statSync(opts.journal).size]] as const) {
          const r = preallocate(f, n)
          if (!r.ok) warnings.push(r.reason)
        }
      } catch (err) {
        // a failed init leaves nothing half-made behind
        for (const f of created) rmSync(f, { force: true })
        throw err
      }
      const primary = opts.role === 'primary'
      const meta: NodeMeta = {
        volumeId: opts.volumeId,
        nodeId: opts.nodeId,
        blockSize: opts.blockSize,
        size: opts.size,
        role: opts.role,
        epochs: primary ? [{ epoch: 1, nodeId: opts.nodeId, startSeq: 1 }] : [],
        headSeq: 0,
        journalTail: 1,
        consistent: primary,
        syncedOnce: primary,
        resyncRemaining: null,
        cleanShutdown: true,
        peers: {},
      }
      MetadataStore.create(opts.meta, meta).close()
      return meta
    } finally {
      lock.release()
    }
  }

  /** Opens and recovers. A corrupt metadata file is fatal for a primary unless `allowCorruptMeta`. */
  static open(paths: StorePaths, opts: { allowCorruptMeta?: boolean; nodeId?: string; blockSize?: number } = {}): NodeStore {
    const lock = locks().acquire(paths.data)
    try {
      const { store, load } = MetadataStore.open(paths.meta)
      let meta: NodeMeta
      let corrupt = false
      if (load.ok) {
        meta = load.meta
      } else {
        if (!opts.allowCorruptMeta) {
          store.close()
          throw new BlockrepError('ERR_META_CORRUPT', `metadata ${paths.meta} failed its checksum in both slots (${load.reason}); start as a standby to be rebuilt by a FULL sync, or restore it`, { context: { path: paths.meta } })
        }
        corrupt = true
        meta = NodeStore.rebuiltMeta(paths, opts.nodeId ?? '', opts.blockSize ?? 4096)
      }
      const volume = Volume.open(paths.data, { blockSize: meta.blockSize, size: meta.size })
      const journal = Journal.open(paths.journal, {})
      // the journal holds the head; metadata only caches it (invariant 3)
      const replayed = replayJournal(journal, volume)
      if (replayed > 0) volume.flushSync()
      if (journal.headSeq === 0 && meta.headSeq > 0) journal.reset(meta.headSeq + 1)
      meta.headSeq = journal.headSeq
      meta.journalTail = journal.tailSeq
      const recovery = {
        replayed,
        droppedTornBytes: journal.recovery.droppedTornBytes,
        metaFellBack: load.ok ? load.fellBack : false,
        metaProblem: load.ok ? null : load.reason,
      }
      return new NodeStore(paths, volume, journal, store, lock, meta, corrupt, recovery)
    } catch (err) {
      lock.release()
      throw err
    }
  }

  /** What a standby with unreadable metadata knows for sure: its data file's size. Everything else is rebuilt by a FULL sync. */
  private static rebuiltMeta(paths: StorePaths, nodeId: string, blockSize: number): NodeMeta {
    const size = statSync(paths.data).size
    return {
      volumeId: '', nodeId, blockSize, size, role: 'standby', epochs: [], headSeq: 0, journalTail: 1,
      consistent: false, syncedOnce: false, resyncRemaining: null, cleanShutdown: false, peers: {},
    }
  }

  get headSeq(): number {
    return this.journal.headSeq
  }

  get epoch(): number {
    const e = this.meta.epochs
    return e.length ? e[e.length - 1].epoch : 0
  }

  get blocks(): number {
    return this.volume.blocks
  }

  peer(nodeId: string): PeerMeta {
    let p = this.meta.peers[nodeId]
    if (!p) {
      p = emptyPeerMeta(nodeId)
      this.meta.peers[nodeId] = p
    }
    return p
  }

  /** Durably writes the metadata (cached head and tail refreshed from the journal). */
  saveMeta(): void {
    this.meta.headSeq = this.journal.headSeq
    this.meta.journalTail = this.journal.tailSeq
    this.metaStore.save(this.meta)
  }

  toWire(): WireMeta {
    const m = this.meta
    return {
      volumeId: m.volumeId,
      nodeId: m.nodeId,
      blockSize: m.blockSize,
      size: m.size,
      role: m.role,
      epochs: m.epochs.map((e) => ({ ...e })),
      headSeq: this.journal.headSeq,
      journalTail: this.journal.tailSeq,
      consistent: m.consistent && !this.metaCorrupt,
      syncedOnce: m.syncedOnce && !this.metaCorrupt,
      resyncRemaining: m.resyncRemaining ? m.resyncRemaining.serialize() : null,
      cleanShutdown: m.cleanShutdown,
      metaCorrupt: this.metaCorrupt,
    }
  }

  /** Flushes data and journal, marks the metadata clean, releases the lock. */
  close(clean = true): void {
    try {
      this.volume.flushSync()
      this.journal.syncSync()
      if (clean) {
        this.meta.cleanShutdown = true
        this.saveMeta()
      }
    } finally {
      this.journal.close()
      this.volume.close()
      this.metaStore.close()
      this.lock.release()
    }
  }

  /** Marks the metadata dirty at start so a crash is visible at the next open. */
  markOpen(): void {
    this.meta.cleanShutdown = false
    this.saveMeta()
  }

  bitmaps() {
    return bitmaps()
  }
}
