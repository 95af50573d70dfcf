import { open, readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { StorageError } from '@sluice/store';
import { mapLmdbError } from './lmdb-errors.js';

/** Name of the lock file inside a partition's directory, beside LMDB's `data.mdb` and `lock.mdb`. */
export const LOCK_FILE = 'writer.lock';

/**
 * The single-Sluice-writer lock of an LMDB partition: a file created exclusively, holding the
 * owner's PID and host. LMDB itself lets any number of processes open the environment and
 * only serializes write transactions; this lock keeps a second Sluice writer (which would
 * interleave its own seqs) out. A lock whose process is gone (a crash, a SIGKILL) is taken
 * over; a live one refuses the second writer. A file rather than a record inside LMDB, so
 * taking and releasing it never needs an LMDB commit (which may be what just failed).
 */
export class WriterLock {
  private constructor(
    private readonly path: string,
    private readonly token: string,
  ) {}

  static async acquire(directory: string): Promise<WriterLock> {
    const path = join(directory, LOCK_FILE);
    const token = `${process.pid}\n${hostname()}\n${Date.now()}-${Math.random().toString(36).slice(2)}\n`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const handle = await open(path, 'wx');
        try {
          await handle.writeFile(token);
          await handle.sync();
        } finally {
          await handle.close();
        }
        return new WriterLock(path, token);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw mapLmdbError(error, { directory });
      }
      const holder = await readFile(path, 'utf8').catch(() => '');
      const [pidText, host] = holder.split('\n');
      const pid = Number(pidText);
      const sameHost = host === undefined || host === '' || host === hostname();
      if (Number.isSafeInteger(pid) && pid > 0 && sameHost && (pid === process.pid || isAlive(pid))) {
        throw new StorageError(
          'Locked',
          `[sluice/store-lmdb] ${directory} is open by another writer (pid ${pid}${pid === process.pid ? ', this process' : ''}): ` +
            `one writer per partition; close it first or open a read-only reader with openLmdbReader()`,
          { retryable: false },
        );
      }
      if (!sameHost) {
        throw new StorageError(
          'Locked',
          `[sluice/store-lmdb] ${directory} is locked by writer pid ${pid} on host "${host}": if that writer is gone, delete ${path}`,
          { retryable: false },
        );
      }
      // The holder is gone: a stale lock from a crash. Remove it and try again.
      await unlink(path).catch(() => undefined);
    }
    throw new StorageError('Locked', `[sluice/store-lmdb] could not take the writer lock ${path}: another process keeps taking it`);
  }

  /** Releases the lock if this process still holds it. */
  async release(): Promise<void> {
    const holder = await readFile(this.path, 'utf8').catch(() => '');
    if (holder === this.token) await unlink(this.path).catch(() => undefined);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
