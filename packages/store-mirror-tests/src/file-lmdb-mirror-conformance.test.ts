import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMirroredStorage } from '@sluice/store';
import { describeStorageConformance } from '@sluice/store-conformance';
import { createFileStorage } from '@sluice/store-file';
import { createLmdbStorage } from '@sluice/store-lmdb';
import { appendRawToFileLog, appendRawToLmdbLog } from './raw-append.fixture.js';

// A mirror of a file location and an LMDB location passes the suite unchanged. appendRaw
// leaves the crash remains on both copies, as a crash during a mirrored write would.
describeStorageConformance({
  name: 'mirror(file, lmdb)',
  createLocation: async () => {
    const root = await mkdtemp(join(tmpdir(), 'sluice-mirror-'));
    const file = join(root, 'file');
    const lmdb = join(root, 'lmdb');
    await mkdir(file);
    await mkdir(lmdb);
    return {
      storage: (options) =>
        createMirroredStorage({
          locations: [
            { storage: createFileStorage({ directory: file, segmentBytes: 64 * 1024, fsync: options?.fsync }), directory: file, label: 'file' },
            { storage: createLmdbStorage({ directory: lmdb, fsync: options?.fsync }), directory: lmdb, label: 'lmdb' },
          ],
        }),
      appendRaw: async (bytes) => {
        await appendRawToFileLog(file, bytes);
        await appendRawToLmdbLog(lmdb, bytes);
      },
      destroy: () => rm(root, { recursive: true, force: true }),
    };
  },
});
