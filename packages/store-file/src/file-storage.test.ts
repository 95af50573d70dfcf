import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeStorageConformance } from '@sluice/store-conformance';
import { createFileStorage } from './index.js';
import { SegmentIndex, segmentName } from './segment-log.js';

/** Writes bytes right after the last verified batch, as a crash mid-write leaves them. */
export async function appendRawToFileLog(directory: string, bytes: Uint8Array): Promise<void> {
  const index = new SegmentIndex(directory);
  const tail = await index.scanForward();
  await index.close();
  const handle = await open(join(directory, segmentName(tail.segment)), 'r+');
  try {
    await handle.write(bytes, 0, bytes.length, tail.validEnd);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

describeStorageConformance({
  name: 'file',
  createLocation: async () => {
    const directory = await mkdtemp(join(tmpdir(), 'sluice-file-'));
    return {
      storage: () => createFileStorage({ directory, segmentBytes: 64 * 1024 }),
      appendRaw: (bytes) => appendRawToFileLog(directory, bytes),
      destroy: () => rm(directory, { recursive: true, force: true }),
    };
  },
});
