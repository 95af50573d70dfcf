import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeStorageConformance } from '@sluice/store-conformance';
import { createFileStorage } from './index.js';
import { appendRawToFileLog } from './raw-append.fixture.js';

describeStorageConformance({
  name: 'file',
  createLocation: async () => {
    const directory = await mkdtemp(join(tmpdir(), 'sluice-file-'));
    return {
      storage: (options) => createFileStorage({ directory, segmentBytes: 64 * 1024, fsync: options?.fsync }),
      appendRaw: (bytes) => appendRawToFileLog(directory, bytes),
      destroy: () => rm(directory, { recursive: true, force: true }),
    };
  },
});
