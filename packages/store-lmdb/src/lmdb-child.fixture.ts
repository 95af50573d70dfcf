/**
 * Child process of the cross-process tests, bundled with esbuild and run with plain `node`.
 *
 *   reader <directory> <untilSeq>   opens a read-only reader, waits until it sees untilSeq,
 *                                   prints every event ("event <seq> <payload>") and "done"
 *   writer <directory> <fsync>      opens the partition as its writer, prints "open <lastSeq>",
 *                                   then appends commands cmd-<pid>-<n> as fast as it can,
 *                                   printing "ack <id> <firstSeq> <lastSeq>" for each, until killed
 */
import { openPartition } from '@sluice/store';
import { createLmdbStorage, openLmdbReader } from './index.js';

const [mode, directory, arg] = process.argv.slice(2);
const text = new TextDecoder();

if (mode === 'reader') {
  const until = Number(arg);
  const reader = await openLmdbReader({ directory });
  const deadline = Date.now() + 20_000;
  let lastSeq = await reader.lastSeq();
  while (lastSeq < until) {
    if (Date.now() > deadline) {
      process.stderr.write(`reader saw seq ${lastSeq}, never ${until}\n`);
      process.exit(2);
    }
    // Another process's commits have no event to wait on here: poll.
    await new Promise((resolve) => setTimeout(resolve, 5));
    lastSeq = await reader.lastSeq();
  }
  let out = '';
  for await (const batch of reader.read(1, lastSeq)) {
    for (const frame of batch.frames) out += `event ${frame.seq} ${text.decode(frame.payload)}\n`;
  }
  process.stdout.write(`${out}done ${lastSeq}\n`);
  await reader.close();
} else if (mode === 'writer') {
  const partition = await openPartition({ storage: createLmdbStorage({ directory, fsync: arg as 'commit' }), name: 'child' });
  process.stdout.write(`open ${partition.lastSeq}\n`);
  let n = 0;
  // Several appenders at once, so a kill lands inside group commits, not only between them.
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (;;) {
        const id = `cmd-${process.pid}-${n++}`;
        const r = await partition.append({ streamId: `s-${n % 5}`, commandId: id, events: [{ type: 'E', data: new TextEncoder().encode(id) }] });
        process.stdout.write(`ack ${id} ${r.firstSeq} ${r.lastSeq}\n`);
      }
    }),
  );
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(1);
}
