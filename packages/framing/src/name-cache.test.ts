import { describe, expect, it } from 'vitest';
import { crc32c as crc } from './crc32c.js';
import { FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST } from './layout.js';
import { FrameWriter } from './frame-writer.js';
import { decodeBatches } from './stream-decoder.js';

// Stream ids and event types are decoded through a bounded cache of recent names: whatever it
// holds, every frame must come back with exactly the name it was written with.

function encode(names: ReadonlyArray<readonly [string, string]>): Uint8Array {
  const w = new FrameWriter();
  names.forEach(([streamId, type], i) => {
    w.appendEvent(i + 1, 1, 0, FLAG_COMMIT_FIRST | FLAG_COMMIT_LAST, streamId, 1, type, undefined, undefined, new Uint8Array([i & 0xff]));
  });
  w.seal(1, 0);
  return Uint8Array.from(w.bytes());
}

describe('decoded names', () => {
  it('are exact across many distinct, colliding, same-length, non-ASCII and long names', () => {
    const names: Array<[string, string]> = [];
    for (let i = 0; i < 5000; i++) names.push([`s-${i}`, i % 3 === 0 ? 'Deposited' : 'Withdrawn']);
    for (let i = 0; i < 300; i++) names.push([`acct-${String(i).padStart(4, '0')}`, `T${i % 7}`]); // same length, one byte apart
    names.push(['café-1', 'Überwiesen'], ['café-2', 'Überwiesen'], ['x'.repeat(64), 'y'.repeat(65)], ['x'.repeat(63) + 'z', 'y'.repeat(65)]);
    // Twice: the second pass decodes every name from a cache the first pass filled.
    for (let pass = 0; pass < 2; pass++) {
      const { batches, report } = decodeBatches(encode(names));
      expect(report.reason).toBe('end');
      expect(batches[0].frames.map((f) => [f.streamId, f.eventType])).toEqual(names);
    }
  });

  it('never caches a name that is not valid UTF-8', () => {
    const bytes = encode([['ok-stream', 'Ok']]);
    const good = decodeBatches(bytes, { verifyDigest: false });
    expect(good.batches[0].frames[0].streamId).toBe('ok-stream');
    // Same length, one invalid byte: the frame is refused (its CRC is fixed up), not served from the cache.
    const bad = Uint8Array.from(bytes);
    const at = Buffer.from(bad.buffer).indexOf('ok-stream');
    bad[at] = 0xff;
    const crcAt = bad.length - 88 - 4; // the single event frame's CRC, before the 88-byte marker
    new DataView(bad.buffer).setUint32(crcAt, crc(bad, 0, crcAt), true);
    const { report } = decodeBatches(bad, { verifyDigest: false });
    expect(report.reason).toBe('malformed-frame');
    expect(report.detail).toMatch(/UTF-8/);
    expect(decodeBatches(bytes).batches[0].frames[0].streamId).toBe('ok-stream');
  });
});
