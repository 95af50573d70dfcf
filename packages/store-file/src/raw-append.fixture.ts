import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { SegmentIndex, segmentName } from './segment-log.js';

/**
 * Test helper: writes bytes right after the last verified batch (in the segment holding it, or
 * at the start of the data of the last segment the log entered), as a crash mid-write leaves
 * them. Call it only while no writer has the partition open.
 */
export async function appendRawToFileLog(directory: string, bytes: Uint8Array): Promise<void> {
  const index = new SegmentIndex(directory);
  await index.scanForward();
  await index.close();
  const handle = await open(join(directory, segmentName(index.endSegment)), 'r+');
  try {
    await handle.write(bytes, 0, bytes.length, index.endOffset);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}
