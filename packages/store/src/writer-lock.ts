import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { StorageError } from './errors.js';

/** Name of the lock file inside a partition's directory. */
export const LOCK_FILE = 'writer.lock';

/**
 * The single-writer lock of a partition kept in a local directory (file and LMDB backends): a
 * file created atomically with its content, holding the owner's PID and host. A lock whose process is gone (a crash, a SIGKILL) is taken over; a live one
 * refuses the second writer. Works for processes on one host, which is where a file
 * partition's writer and its disks are.
 */
export class WriterLock {
  private constructor(
    private readonly path: string,
    private readonly token: string,
  ) {}

  /**
   * Takes the lock of `directory`. `owner` names the backend in messages ("store-file");
   * `readerHint` says how to read without writing ("openFileReader()").
   */
  static async acquire(directory: string, owner = 'store', readerHint = 'a read-only reader'): Promise<WriterLock> {
    const path = join(directory, LOCK_FILE);
    const token = `${process.pid}\n${hostname()}\n${Date.now()}-${Math.random().toString(36).slice(2)}\n`;
    for (let attempt = 0; attempt < 5; attempt++) {
      if (await linkNew(directory, path, token, owner)) {
        HELD.add(path);
        return new WriterLock(path, token);
      }
      const holder = await readFile(path, 'utf8').catch(() => undefined);
      if (holder === undefined) continue; // released meanwhile: try again
      const [pidText, host] = holder.split('\n');
      const pid = Number(pidText);
      const sameHost = host === undefined || host === '' || host === hostname();
      const validPid = Number.isSafeInteger(pid) && pid > 0;
      // Our own PID holds it only if this process took it: a restarted container reuses PIDs.
      const alive = validPid && sameHost && (pid === process.pid ? HELD.has(path) : isAlive(pid));
      if (alive) {
        throw new StorageError(
          'Locked',
          `[sluice/${owner}] ${directory} is open by another writer (pid ${pid}${pid === process.pid ? ', this process' : ''}): ` +
            `one writer per partition; close it first or read with ${readerHint}`,
          { retryable: false },
        );
      }
      if (validPid && !sameHost) {
        throw new StorageError(
          'Locked',
          `[sluice/${owner}] ${directory} is locked by pid ${pid} on host "${host}": if that writer is gone, delete ${path}`,
          { retryable: false },
        );
      }
      await removeStale(directory, path, holder);
    }
    throw new StorageError('Locked', `[sluice/${owner}] could not take the writer lock ${path}: another process keeps taking it`);
  }

  /** Releases the lock if this process still holds it. */
  async release(): Promise<void> {
    HELD.delete(this.path);
    const holder = await readFile(this.path, 'utf8').catch(() => '');
    if (holder === this.token) await unlink(this.path).catch(() => undefined);
  }
}

/** Lock files this process holds. */
const HELD = new Set<string>();

/**
 * Creates the lock atomically with its content: the token goes to a private file first, which
 * is then hard-linked into place (link fails if the lock exists), so no other process ever
 * reads a half-written lock. Returns false when a lock already exists.
 */
async function linkNew(directory: string, path: string, token: string, owner: string): Promise<boolean> {
  const temp = join(directory, `.${LOCK_FILE}.${process.pid}.${Math.random().toString(36).slice(2)}`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(token);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await link(temp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'NotFound' : code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? 'Unauthorized' : code === 'ENOSPC' ? 'Full' : 'Unavailable';
    throw new StorageError(reason, `[sluice/${owner}] cannot create the writer lock in ${directory} (${code ?? (error as Error).message}): check the directory exists and is writable`, { cause: error });
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/**
 * Removes a stale lock without racing another process that replaces it meanwhile: the lock is
 * renamed aside (atomic) and deleted only if it is still the stale one that was read;
 * otherwise it is put back.
 */
async function removeStale(directory: string, path: string, stale: string): Promise<void> {
  const aside = join(directory, `.${LOCK_FILE}.stale.${process.pid}.${Math.random().toString(36).slice(2)}`);
  try {
    await rename(path, aside);
  } catch {
    return; // someone else moved it first
  }
  const moved = await readFile(aside, 'utf8').catch(() => undefined);
  if (moved !== stale) await link(aside, path).catch(() => undefined);
  await unlink(aside).catch(() => undefined);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

