import { describe, expect, it } from 'vitest';
import { FrameWriter } from '@sluice/framing';
import { EMPTY_IDENTITY, checkWrite, createMemoryStorage, openPartition } from './index.js';

describe('checkWrite', () => {
  it('returns a head whose digest is a copy: the caller reuses the (Buffer) bytes it wrote', () => {
    const writer = new FrameWriter({ initialBytes: 4096 });
    writer.appendEvent(1, 0, 1, 3, 's', 1, 'E', undefined, undefined, new Uint8Array(1));
    writer.seal(0, 1, EMPTY_IDENTITY.digest);
    const bytes = writer.bytes();
    expect(Buffer.isBuffer(bytes)).toBe(true);
    const head = checkWrite(bytes, 1, 1, EMPTY_IDENTITY, 'test');
    const digest = Uint8Array.from(head.digest);
    bytes.fill(0xee);
    expect(head.digest).toEqual(digest);
  });

  it('keeps the chain across idle periods when groups are recycled (the head digest survived writer reuse)', async () => {
    // Waves of units filling several groups each, awaited between waves: before the fix the
    // first group of the second wave was refused as a broken chain.
    const p = await openPartition({ storage: createMemoryStorage(), batchBytesMax: 60 * 1024 });
    const data = new Uint8Array(0);
    for (let w = 0; w < 3; w++) {
      const acks: Array<Promise<unknown>> = [];
      for (let u = 0; u < 64; u++) {
        const n = w * 64 + u;
        const changes = Array.from({ length: 64 }, (_, k) => ({ streamId: `s${n}.${k}`, events: [{ type: 'E', data }] }));
        acks.push(p.commit({ changes, commandIds: changes.map((_, k) => `c${n}.${k}`) }));
      }
      await Promise.all(acks);
    }
    expect(p.lastSeq).toBe(3 * 64 * 64);
    await p.close();
  });
});
