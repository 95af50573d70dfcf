import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { SegmentIndex, segmentName } from './segment-log.js';

/** Test helper: writes bytes right after the last verified batch, as a crash mid-write leaves them. */
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
