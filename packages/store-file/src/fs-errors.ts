import { StorageError } from '@sluice/store';

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
