import type { FsyncPolicy } from '@sluice/store';
import type { BatchDatabase, LmdbRoot } from './lmdb-env.js';

/** The lmdb-js environment flags that carry out an fsync policy. */
export interface DurabilityFlags {
  /** lmdb-js `overlappingSync`: commit first, flush on a background thread right after. */
  readonly overlappingSync: boolean;
  /** LMDB `MDB_NOSYNC`: never fdatasync on commit. */
  readonly noSync: boolean;
}

/**
 * How each fsync policy maps onto LMDB:
 * - `commit`: plain LMDB commits (no `noSync`, no `overlappingSync`): the commit writes the
 *   data pages, fdatasyncs, writes the meta page and fdatasyncs again before lmdb-js resolves
 *   the put, so `sync()` (which waits for the last write's transaction) resolves only once
 *   the batches are on disk; `write()` resolves as soon as the transaction is queued.
 * - `interval`: `overlappingSync`: the put resolves once the commit is written to the OS
 *   (visible to every process; a process crash loses nothing); lmdb-js flushes it on a
 *   background thread, keeping the last flushed snapshot to fall back to after a power
 *   failure, and a timer forces `mdb_env_sync` every interval, so at most that window is lost.
 * - `none`: `noSync` (`MDB_NOSYNC`): written to the OS, never forced; a power failure can lose
 *   recent commits and, on file systems that reorder writes, damage the file.
 */
export function durabilityFlags(policy: FsyncPolicy): DurabilityFlags {
  switch (policy.kind) {
    case 'commit':
      return { overlappingSync: false, noSync: false };
    case 'interval':
      return { overlappingSync: true, noSync: false };
    case 'none':
      return { overlappingSync: false, noSync: true };
  }
}

/** What is durable when `sync()` resolves, in words (for messages and the README). */
export function describeLmdbDurability(policy: FsyncPolicy): string {
  switch (policy.kind) {
    case 'commit':
      return 'LMDB synchronous commit: data and meta pages fdatasynced before sync() resolves';
    case 'interval':
      return (
        `LMDB commit written to the OS when write() resolves (survives a process crash); flushed on a background thread ` +
        `(overlappingSync) and forced every ${policy.intervalMs} ms`
      );
    case 'none':
      return 'LMDB commit written to the OS when write() resolves (survives a process crash); never forced to disk (MDB_NOSYNC)';
  }
}

/** Carries out the policy after each commit and on close. */
export class Durability {
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private dirty = false;
  /** An error from a background sync; writes and syncs refuse to continue once set. */
  failure: unknown;

  constructor(
    private readonly policy: FsyncPolicy,
    private readonly root: LmdbRoot,
    private readonly batches: BatchDatabase,
  ) {
    if (policy.kind === 'interval') {
      this.timer = setInterval(() => {
        if (this.dirty && this.syncing === undefined) void this.sync().catch(() => undefined);
      }, policy.intervalMs);
      this.timer.unref();
    }
  }

  /** Called once a write transaction committed; resolves when it counts as durable per the policy. */
  async afterCommit(): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (this.policy.kind === 'commit') {
      // A no-op for a plain synchronous commit; waits for the flush if the environment was
      // ever opened with overlappingSync.
      await this.batches.flushed;
    } else {
      this.dirty = true;
    }
  }

  /** Stops the timer; forces what was written to disk unless the storage failed. */
  async close(healthy: boolean): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.syncing?.catch(() => undefined);
    if (healthy && this.dirty && this.failure === undefined) await this.sync().catch(() => undefined);
  }

  private sync(): Promise<void> {
    this.dirty = false;
    const syncing = new Promise<void>((resolve, reject) => {
      this.root.sync((error) => (error === undefined || error === null ? resolve() : reject(error)));
    }).then(
      () => {
        this.syncing = undefined;
      },
      (error: unknown) => {
        this.syncing = undefined;
        this.failure = error;
        throw error;
      },
    );
    this.syncing = syncing;
    return syncing;
  }
}
