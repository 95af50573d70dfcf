import { realpathSync } from 'node:fs';
import { open } from 'lmdb';
import { StorageError, type FsyncPolicy } from '@sluice/store';
import { durabilityFlags } from './durability.js';
import { mapLmdbError } from './lmdb-errors.js';

/** Name of the LMDB database holding the batches: key = first seq (a number), value = the appended bytes. */
export const BATCHES_DB = 'batches';
/** Name of the LMDB database holding the partition's layout record. */
export const META_DB = 'meta';

/** The part of an lmdb-js database the batch log uses (lmdb's own typings miss put options). */
export interface BatchDatabase {
  /** A view of the value valid only until the next read on this environment (lmdb reuses the buffer). */
  getBinaryFast(key: number): Uint8Array | undefined;
  getKeys(options: { start?: number; end?: number; reverse?: boolean; limit?: number }): Iterable<number>;
  put(key: number, value: Uint8Array, options?: { append?: boolean }): Promise<boolean>;
  remove(key: number): Promise<boolean>;
  /** Inside a transaction callback: writes now, false when an `append` key does not sort last. */
  putSync(key: number, value: Uint8Array, options?: { append?: boolean }): boolean;
  /** Inside a transaction callback: removes now. */
  removeSync(key: number): boolean;
  /** Resolves once every earlier write is committed and flushed to disk. */
  readonly flushed: PromiseLike<unknown>;
}

/** The part of an lmdb-js database the partition's layout record uses. */
export interface MetaDatabase {
  getBinary(key: string): Uint8Array | undefined;
  putSync(key: string, value: Uint8Array): void;
}

/** The part of an lmdb-js root database (the environment) used here. */
export interface LmdbRoot {
  transactionSync<T>(action: () => T): T;
  /**
   * Runs `action` inside the next write transaction (on lmdb-js's write thread's turn) and
   * resolves once that transaction has committed, per the environment's sync flags.
   */
  transaction<T>(action: () => T): Promise<T>;
  resetReadTxn(): void;
  getStats(): { pageSize: number; lastPageNumber: number; treeDepth?: number };
  /** mdb_env_sync(force) on a worker thread; the callback gets its error. */
  sync(callback: (error?: Error) => void): void;
  close(): Promise<void>;
}

/** An open environment with the partition's two databases. */
export interface LmdbHandle {
  readonly root: LmdbRoot;
  readonly batches: BatchDatabase;
  readonly meta: MetaDatabase;
  /** Marks the environment as unsafe to write again in this process (a commit failed). */
  poison(): void;
  /** Closes this handle; the environment closes when the last handle in the process does. */
  close(): Promise<void>;
}

/**
 * lmdb-js opens one environment per data file per process and shares it between every
 * `open()` of that file, keeping the flags of the first. This registry knows who opened it,
 * so a writer never silently inherits a read-only environment, another fsync policy's flags,
 * or an environment whose last commit failed.
 */
interface EnvUse {
  /** `reader` when a read-only reader opened it first; otherwise the writer's fsync kind. */
  opener: 'reader' | FsyncPolicy['kind'];
  handles: number;
  poisoned: boolean;
}
const uses = new Map<string, EnvUse>();

/**
 * Opens the partition's environment for the writer. Creates the databases if missing.
 * `initialMapBytes` only sizes the first memory map: lmdb-js grows the map on demand.
 */
export function openWriterEnv(directory: string, fsync: FsyncPolicy, initialMapBytes: number): LmdbHandle {
  const key = canonical(directory);
  const use = uses.get(key);
  if (use !== undefined) {
    if (use.opener === 'reader') {
      throw new StorageError(
        'Locked',
        `[sluice/store-lmdb] ${directory} is open by a read-only reader in this process, and lmdb-js shares one environment per file per process: ` +
          `close the reader before opening the writer, or open readers after the writer`,
      );
    }
    if (use.poisoned) {
      throw new StorageError(
        'Unavailable',
        `[sluice/store-lmdb] ${directory}: a commit failed earlier in this process and its LMDB environment is still held open by a reader in this process: ` +
          `close every reader of this partition in this process, then reopen the writer`,
      );
    }
    if (use.opener !== fsync.kind) {
      throw new StorageError(
        'Invalid',
        `[sluice/store-lmdb] ${directory} is still open in this process (by a reader) with fsync "${use.opener}" flags, and lmdb-js keeps the first opener's flags: ` +
          `close the readers before reopening the writer with fsync "${fsync.kind}"`,
      );
    }
  }
  const flags = durabilityFlags(fsync);
  let root: ReturnType<typeof open>;
  try {
    root = open({
      path: directory,
      encoding: 'binary',
      mapSize: initialMapBytes,
      maxDbs: 4,
      // One put per append, committed on its own: no batching across event turns (lmdb-js's
      // turn batching also leaves an unhandled rejection behind when a commit fails).
      eventTurnBatching: false,
      noMemInit: true,
      ...flags,
    });
  } catch (error) {
    throw mapLmdbError(error, { directory });
  }
  return register(key, root, fsync.kind, directory, true);
}

/** Opens the partition's environment read-only, for a reader. The writer must have created it. */
export function openReaderEnv(directory: string): LmdbHandle {
  let key: string;
  try {
    key = realpathSync(directory);
  } catch (error) {
    throw notCreated(directory, error);
  }
  let root: ReturnType<typeof open>;
  try {
    root = open({ path: directory, encoding: 'binary', readOnly: true, maxDbs: 4 });
  } catch (error) {
    const mapped = mapLmdbError(error, { directory });
    throw mapped.reason === 'NotFound' ? notCreated(directory, error) : mapped;
  }
  return register(key, root, 'reader', directory, false);
}

function register(key: string, rawRoot: ReturnType<typeof open>, opener: EnvUse['opener'], directory: string, create: boolean): LmdbHandle {
  const use = uses.get(key) ?? { opener, handles: 0, poisoned: false };
  use.handles++;
  uses.set(key, use);
  let closed = false;
  const release = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    use.handles--;
    if (use.handles === 0 && uses.get(key) === use) uses.delete(key);
    await rawRoot.close();
  };
  const root = rawRoot as unknown as LmdbRoot;
  try {
    const batches = rawRoot.openDB(BATCHES_DB, { encoding: 'binary', create } as never) as unknown as BatchDatabase | undefined;
    const meta = rawRoot.openDB(META_DB, { encoding: 'binary', create } as never) as unknown as MetaDatabase | undefined;
    if (batches === undefined || meta === undefined) throw notCreated(directory, undefined);
    return {
      root,
      batches,
      meta,
      poison: () => {
        use.poisoned = true;
      },
      close: release,
    };
  } catch (error) {
    void release().catch(() => undefined);
    throw error instanceof StorageError ? error : mapLmdbError(error, { directory });
  }
}

function canonical(directory: string): string {
  try {
    return realpathSync(directory);
  } catch (error) {
    throw mapLmdbError(error, { directory });
  }
}

function notCreated(directory: string, cause: unknown): StorageError {
  return new StorageError(
    'NotFound',
    `[sluice/store-lmdb] ${directory} holds no LMDB partition yet: open its writer (createLmdbStorage) once to create it, or check the path`,
    cause === undefined ? undefined : { cause },
  );
}
