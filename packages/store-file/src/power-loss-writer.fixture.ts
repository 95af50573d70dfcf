/**
 * Child process of the power-loss test: opens a file partition with the given fsync policy,
 * appends commits from several appenders at once, and prints each acknowledged commit on stdout
 * ("ack <commandId> <firstSeq> <lastSeq>"). The parent SIGKILLs it and copies the disk image.
 *
 * argv: <directory> <fsync policy> <segmentBytes> <first command number> <preallocate>
 */
import { openPartition } from '@sluice/store';
import type { FsyncPolicyInput } from '@sluice/store';
import { createFileStorage } from './index.js';

const [directory, fsync, segmentBytesText, firstText, preallocate] = process.argv.slice(2);
const payloadOf = (id: string): Uint8Array => new TextEncoder().encode(`payload-of-${id}`.padEnd(200, '.'));

const partition = await openPartition({
  storage: createFileStorage({ directory, segmentBytes: Number(segmentBytesText), fsync: fsync as FsyncPolicyInput, preallocate: preallocate as 'sparse' | 'zero-fill' }),
  name: 'power-loss',
});
process.stdout.write(`open ${partition.lastSeq}\n`);

let n = Number(firstText);
// Several appenders at once, so the power goes out inside group commits, not only between them.
await Promise.all(
  Array.from({ length: 8 }, async () => {
    for (;;) {
      const id = `cmd-${n++}`;
      const events = Array.from({ length: 1 + (n % 3) }, (_, i) => ({ type: `E${i}`, data: payloadOf(id) }));
      const r = await partition.commit({ commandIds: [id], changes: [{ streamId: `stream-${n % 5}`, events }] });
      process.stdout.write(`ack ${id} ${r.firstSeq} ${r.lastSeq}\n`);
    }
  }),
);
