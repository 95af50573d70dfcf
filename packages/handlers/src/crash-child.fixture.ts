// Child process of crash.test.ts: handles two messages on a file-store partition and SIGKILLs
// itself right after the second one's commit is durable, before it is acknowledged.
import { writeSync } from 'node:fs';
import { openPartition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { createHandlerHost } from './index.js';
import { account } from './test-domain.fixture.js';

const [directory, killAfter] = process.argv.slice(2);
const partition = await openPartition({ storage: createFileStorage({ directory, fsync: 'commit' }), name: 'crash' });
const host = createHandlerHost({
  partition,
  entities: [account],
  afterCommit: (outcome) => {
    writeSync(1, `committed ${outcome.messageId} ${outcome.firstSeq} ${outcome.duplicate}\n`);
    if (outcome.messageId === killAfter) process.kill(process.pid, 'SIGKILL');
  },
});
for (const message of [
  { id: 'open-a', commands: [{ recipient: 'account-a', command: { type: 'Open' } }] },
  { id: 'dep-crash', commands: [{ recipient: 'account-a', command: { type: 'Deposit', amount: 7 } }] },
]) {
  await host.execute(message);
  writeSync(1, `ack ${message.id}\n`);
}
await partition.close();
