import { close, constants, fstat, ftruncate, open, read, write } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { StorageError, type StorageErrorReason } from './errors.js';

/** Name of the lock file inside a partition's directory. */
export const LOCK_FILE = 'writer.lock';

/**
 * The canonical identity of a local location (a partition's directory): the same folder has
 * the same identity under every path spelling (symbolic links, relative or absolute, `..`).
 */
export interface LocationIdentity {
  /** The directory with every symbolic link resolved (`fs.realpath`). */
  readonly realPath: string;
  /** Device number of the directory (`stat.dev`, exact). */
  readonly dev: bigint;
  /** Inode number of the directory (`stat.ino`, exact). */
  readonly ino: bigint;
  /** `"<dev>:<ino>"`: equal exactly when two identities name one folder; a `Map`/`Set` key. */
  readonly key: string;
  /** For messages: `/data/payments (device 2049, inode 131074)`. */
  readonly label: string;
}

/**
 * The identity of `directory` (which must exist): its real path, device and inode. Two
 * locations are the same folder exactly when their `key`s are equal, whatever the paths say.
 *
 * @example
 * const [a, b] = await Promise.all([locationIdentity('./data/p1'), locationIdentity('/srv/data/p1')]);
 * if (a.key === b.key) throw new Error(`two partitions on one folder: ${a.label}`);
 */
export async function locationIdentity(directory: string, owner = 'store'): Promise<LocationIdentity> {
  try {
    const realPath = await realpath(directory);
    const stats = await stat(realPath, { bigint: true });
    return {
      realPath,
      dev: stats.dev,
      ino: stats.ino,
      key: `${stats.dev}:${stats.ino}`,
      label: `${realPath} (device ${stats.dev}, inode ${stats.ino})`,
    };
  } catch (error) {
    throw ioError(error, owner, `cannot resolve the location ${directory}`, 'check the directory exists and is readable');
  }
}

/**
 * The single-writer lock of a partition kept in a local directory (file and LMDB backends): an
 * exclusive open-file-description lock (`fcntl(F_OFD_SETLK)` on Linux) on `writer.lock` inside
 * the directory. The kernel decides, so:
 * - it is the folder that is locked, not a path: a second open of it, in this process or
 *   another, under any spelling (symbolic link, relative path), is refused;
 * - two writers in different PID namespaces (containers sharing a volume) are refused;
 * - a writer that dies, however it dies (SIGKILL, OOM killer), leaves no lock behind: the
 *   kernel releases it with the last descriptor, so there is nothing stale to take over and no
 *   PID reuse can block a start;
 * - simultaneous starts never both win (one `fcntl` call decides).
 *
 * The file's content (pid, host, start time) is for humans and messages only, never used to
 * decide. The file is never deleted: deleting a lock file while another process is about to lock
 * it would let two writers lock two different files. Local file systems only (NFS locks depend
 * on the server; LMDB does not support network file systems anyway).
 */
export class WriterLock {
  private fd: number | undefined;

  private constructor(
    fd: number,
    /** The lock file. */
    readonly path: string,
    /** The identity of the locked directory. */
    readonly location: LocationIdentity,
  ) {
    this.fd = fd;
  }

  /**
   * Takes the lock of `directory` (which must exist), or rejects with `StorageError` reason
   * `Locked` (not retryable) when another writer holds it. `owner` names the backend in
   * messages ("store-file"); `readerHint` says how to read without writing ("openFileReader()").
   *
   * @example
   * const lock = await WriterLock.acquire(directory, 'store-file', 'openFileReader()');
   * try { ... } finally { await lock.release(); }
   */
  static async acquire(directory: string, owner = 'store', readerHint = 'a read-only reader'): Promise<WriterLock> {
    const locks = nativeLocks(owner);
    const location = await locationIdentity(directory, owner);
    const path = join(location.realPath, LOCK_FILE);
    for (let attempt = 0; attempt < REPLACED_ATTEMPTS_MAX; attempt++) {
      const fd = await openLockFile(path, owner);
      let locked: boolean;
      try {
        locked = locks.tryLock(fd);
      } catch (error) {
        await closeFd(fd);
        throw ioError(error, owner, `cannot lock ${path}`, 'keep the partition on a local file system that supports fcntl locks', 'Unsupported');
      }
      if (!locked) {
        const holder = await readHolder(fd);
        await closeFd(fd);
        throw lockedError(directory, location, holder, owner, readerHint);
      }
      // A lock file removed or replaced (by hand, or by a writer of the old PID-file scheme)
      // between open and lock is no longer the one the next writer opens: lock the new one.
      if (!(await isStillAt(fd, path))) {
        await closeFd(fd);
        continue;
      }
      HELD.add(location.key);
      await describeHolder(fd).catch(() => undefined); // informational only
      return new WriterLock(fd, path, location);
    }
    throw new StorageError(
      'Unavailable',
      `[sluice/${owner}] ${path} was replaced ${REPLACED_ATTEMPTS_MAX} times while being locked: stop whatever deletes it, then retry`,
    );
  }

  /** True until {@link release}. */
  get held(): boolean {
    return this.fd !== undefined;
  }

  /** Releases the lock (closing the descriptor is what releases it). Idempotent. */
  async release(): Promise<void> {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    HELD.delete(this.location.key);
    // Still the holder until the close: clearing the content cannot race the next writer.
    await new Promise<void>((resolve) => ftruncate(fd, 0, () => resolve()));
    await closeFd(fd);
  }
}

/** How often a lock file replaced under our feet is retried before giving up. */
const REPLACED_ATTEMPTS_MAX = 5;

/** Keys of the locations whose lock this process holds: for messages only, never to decide. */
const HELD = new Set<string>();

/** The part of `fs-native-extensions` used here. */
interface NativeLocks {
  /** Exclusive, non-blocking lock of the whole file; false when another description holds it. */
  tryLock(fd: number): boolean;
}

let native: NativeLocks | undefined;

/**
 * Loads the native lock lazily, so importing `@sluice/store` (the memory backend, the engine)
 * never loads a native addon, and through `require` so bundlers leave the addon alone.
 */
function nativeLocks(owner: string): NativeLocks {
  if (native !== undefined) return native;
  try {
    native = createRequire(import.meta.url)('fs-native-extensions') as NativeLocks;
  } catch (error) {
    throw new StorageError(
      'Unsupported',
      `[sluice/${owner}] cannot load fs-native-extensions, the kernel file lock of local partitions (${(error as Error).message}): ` +
        'install it beside @sluice/store (a bundler must leave it external)',
      { cause: error },
    );
  }
  return native;
}

async function openLockFile(path: string, owner: string): Promise<number> {
  // O_NOFOLLOW: the lock is a regular file of this directory, never one elsewhere through a link.
  const flags = constants.O_RDWR | constants.O_CREAT | (constants.O_NOFOLLOW ?? 0);
  try {
    return await new Promise<number>((resolve, reject) => open(path, flags, 0o644, (error, fd) => (error ? reject(error) : resolve(fd))));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new StorageError('Invalid', `[sluice/${owner}] ${path} is a symbolic link: remove it (the writer lock must be a file of the directory)`, { cause: error });
    }
    throw ioError(error, owner, `cannot create the writer lock ${path}`, 'check the directory exists and is writable');
  }
}

/** True when `path` still names the file open as `fd`. */
async function isStillAt(fd: number, path: string): Promise<boolean> {
  const [opened, named] = await Promise.all([
    new Promise<{ dev: bigint; ino: bigint }>((resolve, reject) => fstat(fd, { bigint: true }, (error, s) => (error ? reject(error) : resolve(s)))),
    stat(path, { bigint: true }).catch(() => undefined),
  ]);
  return named !== undefined && named.dev === opened.dev && named.ino === opened.ino;
}

/** Writes who holds the lock, for humans (`cat writer.lock`) and for the messages of others. */
async function describeHolder(fd: number): Promise<void> {
  const text = Buffer.from(`${process.pid}\n${hostname()}\n${new Date().toISOString()}\n`);
  await new Promise<void>((resolve, reject) => ftruncate(fd, 0, (error) => (error ? reject(error) : resolve())));
  await new Promise<void>((resolve, reject) => write(fd, text, 0, text.length, 0, (error) => (error ? reject(error) : resolve())));
}

/** What the lock file says about its holder (possibly nothing, or an old PID-file lock's content). */
async function readHolder(fd: number): Promise<{ pid?: number; host?: string }> {
  const buffer = Buffer.alloc(512);
  const length = await new Promise<number>((resolve) => read(fd, buffer, 0, buffer.length, 0, (error, n) => resolve(error ? 0 : n)));
  const [pidText, host] = buffer.subarray(0, length).toString('utf8').split('\n');
  const pid = Number(pidText);
  return { pid: Number.isSafeInteger(pid) && pid > 0 ? pid : undefined, host: host || undefined };
}

function lockedError(
  directory: string,
  location: LocationIdentity,
  holder: { pid?: number; host?: string },
  owner: string,
  readerHint: string,
): StorageError {
  const where = location.realPath === directory ? directory : `${directory} (${location.realPath})`;
  const who = HELD.has(location.key)
    ? `pid ${process.pid}, this process`
    : holder.pid === undefined
      ? 'pid unknown'
      : holder.host === undefined || holder.host === hostname()
        ? `pid ${holder.pid}`
        : `pid ${holder.pid} on host "${holder.host}"`;
  return new StorageError(
    'Locked',
    `[sluice/${owner}] ${where} is open by another writer (${who}): one writer per partition; close the other writer first or read with ${readerHint}`,
    { retryable: false },
  );
}

function closeFd(fd: number): Promise<void> {
  return new Promise((resolve) => close(fd, () => resolve()));
}

function ioError(error: unknown, owner: string, what: string, hint: string, otherwise: StorageErrorReason = 'Unavailable'): StorageError {
  const code = (error as NodeJS.ErrnoException).code;
  const reason: StorageErrorReason =
    code === 'ENOENT' || code === 'ENOTDIR'
      ? 'NotFound'
      : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
        ? 'Unauthorized'
        : code === 'ENOSPC' || code === 'EDQUOT'
          ? 'Full'
          : code === 'EIO' || code === 'EBUSY' || code === 'EMFILE' || code === 'ENFILE' || code === 'EINTR'
            ? 'Unavailable'
            : otherwise;
  return new StorageError(reason, `[sluice/${owner}] ${what} (${code ?? (error as Error).message}): ${hint}`, { cause: error });
}
