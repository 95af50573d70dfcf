/**
 * Child process of the cross-process tests, bundled with esbuild and run with plain `node`.
 *
 *   reader <directory> <untilSeq>   opens a read-only reader, tails from seq 1 until it has seen
 *                                   untilSeq, prints every event ("event <seq> <payload>"), then
 *                                   "head <lastSeq> <epoch> <digest>", "identity …" of untilSeq,
 *                                   "beyond none|some" (identityAt past the head) and "done <lastSeq>"
 *   frames <directory> <s1,s2,…>    opens a read-only reader, reads those frames with readFrames,
 *                                   prints "frame <seq> <streamId> <version> <payload>" for each
 *                                   and "done", or "refused <reason>" when the reader refuses them
 *   writer <directory> <fsync>      opens the partition as its writer, prints "open <lastSeq>",
 *                                   then appends commands cmd-<pid>-<n> as fast as it can,
 *                                   printing "ack <id> <firstSeq> <lastSeq>" for each, until killed
 */
import { openPartition } from '@sluice/store';
import { createLmdbStorage, openLmdbReader } from './index.js';

const [mode, directory, arg] = process.argv.slice(2);
const text = new TextDecoder();
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

if (mode === 'reader') {
  const until = Number(arg);
  const reader = await openLmdbReader({ directory, tailPollMs: [2, 20] });
  const timer = setTimeout(() => {
    process.stderr.write(`reader never saw seq ${until}\n`);
    process.exit(2);
  }, 20_000);
  let out = '';
  // Another process's commits have no event to wait on: the reader's tail polls.
  for await (const batch of reader.tail(1)) {
    for (const frame of batch.frames) out += `event ${frame.seq} ${text.decode(frame.payload)}\n`;
    if (batch.lastSeq >= until) break;
  }
  clearTimeout(timer);
  const head = await reader.head();
  const identity = await reader.identityAt(until);
  out += `head ${head.lastSeq} ${head.epoch} ${hex(head.digest)}\n`;
  out += `identity ${identity?.lastSeq} ${identity?.epoch} ${identity === undefined ? '-' : hex(identity.digest)}\n`;
  out += `beyond ${(await reader.identityAt(head.lastSeq + 1)) === undefined ? 'none' : 'some'}\n`;
  process.stdout.write(`${out}done ${head.lastSeq}\n`);
  await reader.close();
} else if (mode === 'frames') {
  const reader = await openLmdbReader({ directory });
  let out = '';
  try {
    for await (const f of (reader.readFrames as NonNullable<typeof reader.readFrames>)(arg.split(',').map(Number))) {
      out += `frame ${f.seq} ${f.streamId} ${f.streamVersion} ${text.decode(f.payload)}\n`;
    }
    out += 'done\n';
  } catch (error) {
    out += `refused ${(error as { reason?: string }).reason}\n`;
  }
  process.stdout.write(out);
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
