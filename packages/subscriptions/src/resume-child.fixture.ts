// Child process of resume.test.ts: runs a subscriber with a stream checkpoint on a file-store
// partition, printing every seq it handles, until it has caught up (or is SIGKILLed).
import { writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { openPartition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { createStreamCheckpointStore, startSubscription } from './index.js';

const [directory] = process.argv.slice(2);
const partition = await openPartition({ storage: createFileStorage({ directory, fsync: 'commit' }), name: 'resume' });
const target = partition.lastSeq;
const sub = startSubscription({
  subscriber: 'resumer',
  source: partition,
  checkpoints: createStreamCheckpointStore(partition),
  batchSizeMax: 10,
  handle: async (events) => {
    writeSync(1, events.map((e) => `${e.seq}\n`).join(''));
    await sleep(1);
  },
});
// Checkpoint commits land above `target`; events up to it are the work.
await sub.waitFor(target);
await sub.stop();
await partition.close();
