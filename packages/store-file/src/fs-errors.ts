import { StorageError } from '@sluice/store';

/**
 * Maps Node's errno codes onto storage error reasons, with a hint of what to do. `during`
 * names the operation ("write", "fdatasync"); a failed write or sync is never retryable on the
 * same instance (the failure rule: the storage must be reopened), whatever the errno.
 */
export function mapFsError(error: unknown, where: string, during?: 'write' | 'sync'): StorageError {
  if (error instanceof StorageError) return error;
  const code = (error as NodeJS.ErrnoException)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const failed = during === undefined ? '' : ` ${during === 'sync' ? 'fdatasync' : 'write'} failed:`;
  const reopen = during === undefined ? '' : '; this storage refuses further writes: fix the cause, then reopen it (recovery cuts what was never durable)';
  const retryable = during === undefined ? undefined : false;
  switch (code) {
    case 'ENOENT':
      return new StorageError('NotFound', `[sluice/store-file] ${where}:${failed} not found (${message}): check the directory path, or set createDirectory: true`, { cause: error, retryable });
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return new StorageError('Full', `[sluice/store-file] ${where}:${failed} out of space (${code}): free disk space or move the partition${reopen}`, { cause: error, retryable });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new StorageError('Unauthorized', `[sluice/store-file] ${where}:${failed} permission denied (${code}): check the directory's owner and mode${reopen}`, { cause: error, retryable });
    case 'EIO':
      return new StorageError('Unavailable', `[sluice/store-file] ${where}:${failed} I/O error (EIO): the disk lost data it was given; check the device${reopen}`, {
        cause: error,
        retryable: false,
      });
    case 'EAGAIN':
    case 'EBUSY':
    case 'EMFILE':
    case 'ENFILE':
      return new StorageError('Unavailable', `[sluice/store-file] ${where}:${failed} resource busy or exhausted (${code}): retry later${reopen}`, { cause: error, retryable });
    default:
      return new StorageError('Unavailable', `[sluice/store-file] ${where}:${failed} ${message}${reopen}`, { cause: error, retryable });
  }
}
