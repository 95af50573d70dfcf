/**
 * Writer for the mirror power-loss test: appends commits from several appenders at once to a
 * mirror of two file locations (argv[2] on the loop-device disk, argv[3] on the real disk),
 * fsync per commit, printing `ack <commandId> <firstSeq> <lastSeq>` for each acknowledged
 * commit. Never stops by itself: the test SIGKILLs it.
 */
import { createMirroredStorage, openPartition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';

const [loopDir, diskDir, prefix] = process.argv.slice(2);
const partition = await openPartition({
  name: 'mirror-power',
  storage: createMirroredStorage({
    locations: [
      { storage: createFileStorage({ directory: loopDir, fsync: 'commit', segmentBytes: 1024 * 1024 }), directory: loopDir, label: 'loop' },
      { storage: createFileStorage({ directory: diskDir, fsync: 'commit', segmentBytes: 1024 * 1024 }), directory: diskDir, label: 'disk' },
    ],
  }),
});
process.stdout.write(`open ${partition.lastSeq}\n`);
let n = 0;
await Promise.all(
  Array.from({ length: 8 }, async () => {
    for (;;) {
      const id = `${prefix}-${n++}`;
      const events = Array.from({ length: 1 + (n % 3) }, (_, i) => ({ type: `E${i}`, data: new TextEncoder().encode(id.padEnd(200, '.')) }));
      const r = await partition.append({ streamId: `s-${n % 5}`, commandId: id, events });
      process.stdout.write(`ack ${id} ${r.firstSeq} ${r.lastSeq}\n`);
    }
  }),
);
