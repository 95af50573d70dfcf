/**
 * Child process of the crash test: appends commands to a file partition as fast as it can
 * and reports each one on stdout before sending it ("send <id>") and once acknowledged
 * ("ack <id> <firstSeq> <lastSeq>"). The parent SIGKILLs it at a random moment.
 *
 * argv: <directory> <first command number> <comma-separated command ids to resend first>
 */
import { openPartition } from '@sluice/store';
import { createFileStorage } from './index.js';

const [directory, firstText, resendText] = process.argv.slice(2);
const payloadOf = (id: string): Uint8Array => new TextEncoder().encode(`payload-of-${id}`.padEnd(100, '.'));

const partition = await openPartition({
  storage: createFileStorage({ directory, segmentBytes: 256 * 1024, fsync: 'commit' }),
  name: 'crash',
});
process.stdout.write(`open ${partition.lastSeq}\n`);

const send = (id: string, streamCount: number): Promise<void> => {
  process.stdout.write(`send ${id}\n`);
  const events = Array.from({ length: 1 + (id.length % 3) }, (_, i) => ({ type: `E${i}`, data: payloadOf(id) }));
  const changes = Array.from({ length: streamCount }, (_, s) => ({ streamId: `stream-${(id.length + s) % 7}-${s}`, events }));
  return partition.commit({ commandIds: [id], changes }).then((r) => {
    process.stdout.write(`ack ${id} ${r.firstSeq} ${r.lastSeq}\n`);
  });
};

const resend = resendText === undefined || resendText === '' ? [] : resendText.split(',');
await Promise.all(resend.map((id) => send(id, 1)));
// Several appenders at once, so crashes land inside group commits, not only between them.
let n = Number(firstText);
await Promise.all(
  Array.from({ length: 8 }, async () => {
    for (;;) {
      const id = `cmd-${n++}`;
      await send(id, 1);
    }
  }),
);
