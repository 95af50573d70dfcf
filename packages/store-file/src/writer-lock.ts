import { open, readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { StorageError } from '@sluice/store';

/** Name of the lock file inside a partition's directory. */
export const LOCK_FILE = 'writer.lock';

/**
 * The single-writer lock of a file partition: a file created exclusively, holding the owner's
 * PID and host. A lock whose process is gone (a crash, a SIGKILL) is taken over; a live one
 * refuses the second writer. Works for processes on one host, which is where a file
 * partition's writer and its disks are.
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
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw mapFsError(error, directory);
      }
      const holder = await readFile(path, 'utf8').catch(() => '');
      const [pidText, host] = holder.split('\n');
      const pid = Number(pidText);
      const sameHost = host === undefined || host === '' || host === hostname();
      if (Number.isSafeInteger(pid) && pid > 0 && sameHost && (pid === process.pid || isAlive(pid))) {
        throw new StorageError(
          'Locked',
          `[sluice/store-file] ${directory} is open by another writer (pid ${pid}${pid === process.pid ? ', this process' : ''}): ` +
            `one writer per partition; close it first or open a read-only reader with openFileReader()`,
          { retryable: false },
        );
      }
      if (!sameHost) {
        throw new StorageError(
          'Locked',
          `[sluice/store-file] ${directory} is locked by pid ${pid} on host "${host}": if that writer is gone, delete ${path}`,
          { retryable: false },
        );
      }
      // The holder is gone: a stale lock from a crash. Remove it and try again.
      await unlink(path).catch(() => undefined);
    }
    throw new StorageError('Locked', `[sluice/store-file] could not take the writer lock ${path}: another process keeps taking it`);
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

/** Maps Node's errno codes onto storage error reasons, with a hint of what to do. */
export function mapFsError(error: unknown, where: string): StorageError {
  const code = (error as NodeJS.ErrnoException)?.code;
  const message = error instanceof Error ? error.message : String(error);
  switch (code) {
    case 'ENOENT':
      return new StorageError('NotFound', `[sluice/store-file] ${where}: not found (${message}): check the directory path, or set createDirectory: true`, { cause: error });
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return new StorageError('Full', `[sluice/store-file] ${where}: out of space (${code}): free disk space or move the partition`, { cause: error });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new StorageError('Unauthorized', `[sluice/store-file] ${where}: permission denied (${code}): check the directory's owner and mode`, { cause: error });
    case 'EIO':
    case 'EAGAIN':
    case 'EBUSY':
    case 'EMFILE':
    case 'ENFILE':
      return new StorageError('Unavailable', `[sluice/store-file] ${where}: I/O failed (${code}): check the disk; the partition must be reopened`, { cause: error });
    default:
      return new StorageError('Unavailable', `[sluice/store-file] ${where}: ${message}`, { cause: error });
  }
}
