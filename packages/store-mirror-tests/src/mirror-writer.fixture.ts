/**
 * A writer for the mirror kill -9 test: appends commits with command ids to a mirror of a file
 * location (argv[2]) and an LMDB location (argv[3]), printing `ack <commandId> <lastSeq>` for
 * each acknowledged commit. Never stops by itself: the test kills it.
 */
import { createMirroredStorage, openPartition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { createLmdbStorage } from '@sluice/store-lmdb';

const [fileDir, lmdbDir, prefix] = process.argv.slice(2);
const partition = await openPartition({
  name: 'mirror-crash',
  storage: createMirroredStorage({
    locations: [
      { storage: createFileStorage({ directory: fileDir, segmentBytes: 256 * 1024 }), directory: fileDir, label: 'file' },
      { storage: createLmdbStorage({ directory: lmdbDir }), directory: lmdbDir, label: 'lmdb' },
    ],
  }),
});
process.stdout.write(`open ${partition.lastSeq} dropped ${partition.recovery.droppedSeqs} repairs ${(partition.recovery as { repairs?: unknown[] }).repairs?.length ?? 0}\n`);
let n = 0;
for (;;) {
  await Promise.all(
    Array.from({ length: 16 }, () => {
      const id = `${prefix}-${n++}`;
      return partition
        .append({ streamId: `s-${n % 5}`, commandId: id, events: [{ type: 'E', data: new TextEncoder().encode(id.padEnd(400, '.')) }] })
        .then((r) => process.stdout.write(`ack ${id} ${r.lastSeq}\n`));
    }),
  );
}
