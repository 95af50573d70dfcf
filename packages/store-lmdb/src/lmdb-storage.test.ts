import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeStorageConformance } from '@sluice/store-conformance';
import { createLmdbStorage } from './index.js';
import { appendRawToLmdbLog } from './raw-tail.fixture.js';

describeStorageConformance({
  name: 'lmdb',
  createLocation: async () => {
    const directory = await mkdtemp(join(tmpdir(), 'sluice-lmdb-'));
    return {
      storage: (options) => createLmdbStorage({ directory, fsync: options?.fsync }),
      appendRaw: (bytes) => appendRawToLmdbLog(directory, bytes),
      destroy: () => rm(directory, { recursive: true, force: true }),
    };
  },
});
