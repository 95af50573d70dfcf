import { statfs } from 'node:fs/promises';
import { StorageError } from '@sluice/store';

/** LMDB's own return codes (`mdb.h`), as lmdb-js puts them in an error's numeric `code`. */
export const MDB = {
  KEYEXIST: -30799,
  NOTFOUND: -30798,
  PAGE_NOTFOUND: -30797,
  CORRUPTED: -30796,
  PANIC: -30795,
  VERSION_MISMATCH: -30794,
  INVALID: -30793,
  MAP_FULL: -30792,
  DBS_FULL: -30791,
  READERS_FULL: -30790,
  TXN_FULL: -30788,
  BAD_TXN: -30782,
} as const;

/** errno values lmdb-js reports as positive numeric codes (Linux numbering, as `os.constants.errno`). */
const ERRNO: Readonly<Record<number, string>> = {
  1: 'EPERM',
  2: 'ENOENT',
  5: 'EIO',
  11: 'EAGAIN',
  12: 'ENOMEM',
  13: 'EACCES',
  16: 'EBUSY',
  20: 'ENOTDIR',
  21: 'EISDIR',
  22: 'EINVAL',
  23: 'ENFILE',
  24: 'EMFILE',
  27: 'EFBIG',
  28: 'ENOSPC',
  30: 'EROFS',
  122: 'EDQUOT',
};

/** What the mapping needs to know to say what to do. */
export interface LmdbErrorContext {
  /** The partition's directory, named in the message. */
  readonly directory: string;
  /** The size limit in force, for `Full` messages. */
  readonly mapSize?: number | undefined;
}

/**
 * The error code of an lmdb-js or Node error: a symbolic errno (`"ENOSPC"`), an LMDB code
 * (`-30792`), or undefined. lmdb-js reports errno values as positive numbers; a failed commit
 * arrives wrapped ("Commit failed (see commitError for details)"): unwrap it with
 * {@link unwrapCommitError} first.
 */
export function errorCode(error: unknown): string | number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  if (typeof code === 'number') return ERRNO[code] ?? code;
  return undefined;
}

/**
 * lmdb-js rejects every write of a failed transaction with a generic error whose
 * `commitError` promise rejects with the real one a moment later. Returns the real error.
 */
export async function unwrapCommitError(error: unknown): Promise<unknown> {
  const inner = (error as { commitError?: unknown } | null)?.commitError;
  if (inner === undefined || inner === null || typeof (inner as PromiseLike<unknown>).then !== 'function') return error;
  // Bounded: if lmdb-js never settles it, report the wrapper rather than hang the writer.
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<unknown>((resolve) => {
    timer = setTimeout(() => resolve(error), 1000);
  });
  try {
    return await Promise.race([Promise.resolve(inner).then(() => error, (real: unknown) => real), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Maps an lmdb-js or file-system error onto a {@link StorageError} with a hint of what to do. */
export function mapLmdbError(error: unknown, context: LmdbErrorContext): StorageError {
  if (error instanceof StorageError) return error;
  const where = `[sluice/store-lmdb] ${context.directory}`;
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  const options = { cause: error };
  switch (code) {
    case MDB.MAP_FULL:
      return new StorageError(
        'Full',
        `${where}: the LMDB map is full (MDB_MAP_FULL${context.mapSize === undefined ? '' : `, mapSize ${context.mapSize}`}): raise mapSize and reopen the partition`,
        options,
      );
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return new StorageError('Full', `${where}: out of disk space (${code}): free disk space or move the partition, then reopen it`, options);
    case 'ENOENT':
    case 'ENOTDIR':
      return new StorageError('NotFound', `${where}: not found (${message}): check the directory path, or set createDirectory: true`, options);
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new StorageError('Unauthorized', `${where}: permission denied (${code}): check the directory's owner and mode, and that its file system is writable`, options);
    case 'EISDIR':
    case MDB.INVALID:
    case MDB.VERSION_MISMATCH:
      return new StorageError('Corrupt', `${where}: not an LMDB environment this version can read (${message}): check the path points at a Sluice LMDB partition`, options);
    case MDB.CORRUPTED:
    case MDB.PAGE_NOTFOUND:
      return new StorageError('Corrupt', `${where}: the LMDB file is damaged (${message}): restore the partition from a copy or a shipped archive`, options);
    case MDB.READERS_FULL:
      return new StorageError('Unavailable', `${where}: every LMDB reader slot is taken (MDB_READERS_FULL): close readers or raise maxReaders`, options);
    case MDB.KEYEXIST:
      return new StorageError('Conflict', `${where}: a batch with this first seq is already stored (MDB_KEYEXIST): another writer wrote this partition; reopen it`, options);
    case MDB.PANIC:
    case MDB.BAD_TXN:
      return new StorageError('Unavailable', `${where}: LMDB stopped after a fatal error (${message}): close and reopen the partition`, options);
    case 'EIO':
      return new StorageError('Unavailable', `${where}: I/O failed (EIO): check the disk (a full disk shows up as EIO too); the partition must be reopened`, options);
    case 'EAGAIN':
    case 'EBUSY':
    case 'EMFILE':
    case 'ENFILE':
    case 'ENOMEM':
      return new StorageError('Unavailable', `${where}: ${message} (${code}): retry later; the partition must be reopened`, options);
    default:
      return new StorageError('Unavailable', `${where}: ${message}`, options);
  }
}

/**
 * Maps a failed write. LMDB reports a short write to a full disk as EIO, so an EIO is checked
 * against the file system's free space and reported as `Full` when that is the cause.
 */
export async function mapLmdbWriteError(error: unknown, context: LmdbErrorContext, bytesNeeded: number): Promise<StorageError> {
  const real = await unwrapCommitError(error);
  const code = errorCode(real);
  if (code === 'EIO' || code === 'ENOSPC') {
    const free = await freeBytes(context.directory);
    if (free !== undefined && free < bytesNeeded + 64 * 1024) {
      return new StorageError(
        'Full',
        `[sluice/store-lmdb] ${context.directory}: out of disk space (${code}, ${free} bytes free): free disk space or move the partition, then reopen it`,
        { cause: real },
      );
    }
  }
  return mapLmdbError(real, context);
}

async function freeBytes(directory: string): Promise<number | undefined> {
  try {
    const s = await statfs(directory);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}
