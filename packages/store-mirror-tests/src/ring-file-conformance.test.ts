import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRingStorage } from '@sluice/store';
import { describeStorageConformance } from '@sluice/store-conformance';
import { createFileStorage } from '@sluice/store-file';
import { appendRawToFileLog } from './raw-append.fixture.js';

// A ring location acknowledging from memory in front of a real file location: the suite
// passes unchanged (what it checks after a close was drained to the files).
describeStorageConformance({
  name: 'ring(acknowledge, file)',
  createLocation: async () => {
    const directory = await mkdtemp(join(tmpdir(), 'sluice-ring-file-'));
    return {
      storage: (options) => createRingStorage({ mode: 'acknowledge', capacityBytes: 256 * 1024, durable: createFileStorage({ directory, segmentBytes: 64 * 1024, fsync: options?.fsync }) }),
      appendRaw: (bytes) => appendRawToFileLog(directory, bytes),
      destroy: () => rm(directory, { recursive: true, force: true }),
    };
  },
});
