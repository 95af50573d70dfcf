/**
 * Child process of the I/O-fault test, driven line by line on stdin so the parent decides when
 * a failpoint is on (it runs under `fiu-run -x` and the parent flips failpoints with
 * `fiu-ctrl <pid>`). Commands, one per line:
 *
 * - `open`: opens the partition (a fresh storage each time) → `{"op":"open","lastSeq":n}`
 * - `append <commandId>`: commits two events under that command id →
 *   `{"op":"append","id":…,"ok":true,"firstSeq":…,"lastSeq":…,"duplicate":…}` or `"ok":false` with the error
 * - `append-until-refused <prefix>`: appends `<prefix>-1`, `<prefix>-2`, … one at a time until one is
 *   refused or 10 s pass → `{"op":"append-until-refused","acknowledged":n,"ok":false,…the refusal}`
 *   (`"ok":true` if nothing was refused in time): waits for a background failure to surface
 *   without guessing how long it takes
 * - `read`: reads the whole log → `{"op":"read","lastSeq":n,"commits":[[id,firstSeq,lastSeq],…],"problems":[…]}`
 * - `close`: closes the partition → `{"op":"close","ok":…}`
 * - `exit`
 *
 * Every answer is one JSON line on stdout; a failed command answers `"ok":false` with the error's
 * name, code, reason and message instead of crashing, so the parent sees every result.
 *
 * argv: <directory> <fsync policy>
 */
import { createInterface } from 'node:readline';
import { openPartition, type FsyncPolicyInput, type Partition } from '@sluice/store';
import { createFileStorage } from './index.js';

const [directory, fsync] = process.argv.slice(2);
const payloadOf = (id: string): Uint8Array => new TextEncoder().encode(`payload-of-${id}`);
let partition: Partition | undefined;

const say = (answer: object): void => {
  process.stdout.write(`${JSON.stringify(answer)}\n`);
};
const failure = (error: unknown): object => {
  const e = error as { name?: string; code?: string; reason?: string; message?: string; cause?: { code?: string } };
  return { ok: false, name: e.name, code: e.code, reason: e.reason, errno: e.cause?.code, message: e.message };
};

async function handle(line: string): Promise<void> {
  const [verb, id] = line.trim().split(' ');
  switch (verb) {
    case 'open':
      try {
        partition = await openPartition({ storage: createFileStorage({ directory, fsync: fsync as FsyncPolicyInput, segmentBytes: 1024 * 1024 }), name: 'io-fault' });
        say({ op: 'open', ok: true, lastSeq: partition.lastSeq });
      } catch (error) {
        say({ op: 'open', ...failure(error) });
      }
      return;
    case 'append':
      try {
        if (partition === undefined) throw new Error('not open');
        const events = [0, 1].map((i) => ({ type: `E${i}`, data: payloadOf(id) }));
        const r = await partition.commit({ commandIds: [id], changes: [{ streamId: 'stream-1', events }] });
        say({ op: 'append', id, ok: true, firstSeq: r.firstSeq, lastSeq: r.lastSeq, duplicate: r.duplicate });
      } catch (error) {
        say({ op: 'append', id, ...failure(error) });
      }
      return;
    case 'append-until-refused': {
      if (partition === undefined) {
        say({ op: verb, ok: false, message: 'not open' });
        return;
      }
      const deadline = Date.now() + 10_000;
      let acknowledged = 0;
      while (Date.now() < deadline) {
        const commandId = `${id}-${acknowledged + 1}`;
        try {
          await partition.commit({ commandIds: [commandId], changes: [{ streamId: 'stream-1', events: [0, 1].map((i) => ({ type: `E${i}`, data: payloadOf(commandId) })) }] });
          acknowledged++;
          // Let timers (the interval sync) and I/O callbacks run between appends.
          await new Promise((resolve) => setImmediate(resolve));
        } catch (error) {
          say({ op: verb, acknowledged, ...failure(error) });
          return;
        }
      }
      say({ op: verb, ok: true, acknowledged });
      return;
    }
    case 'read': {
      const commits: Array<[string | undefined, number, number]> = [];
      const problems: string[] = [];
      try {
        if (partition === undefined) throw new Error('not open');
        const decoder = new TextDecoder();
        let expectSeq = 1;
        let first = 0;
        let commandId: string | undefined;
        for await (const event of partition.read()) {
          if (event.seq !== expectSeq) problems.push(`seq ${event.seq} where ${expectSeq} was expected`);
          expectSeq = event.seq + 1;
          if (event.commitFirst) {
            first = event.seq;
            commandId = event.headers?.commandIds[0];
          }
          if (decoder.decode(event.payload) !== `payload-of-${commandId}`) problems.push(`seq ${event.seq}: payload is not ${commandId}'s`);
          if (event.commitLast) commits.push([commandId, first, event.seq]);
        }
        say({ op: 'read', ok: true, lastSeq: partition.lastSeq, commits, problems });
      } catch (error) {
        say({ op: 'read', ...failure(error), commits, problems });
      }
      return;
    }
    case 'close':
      try {
        await partition?.close();
        partition = undefined;
        say({ op: 'close', ok: true });
      } catch (error) {
        partition = undefined;
        say({ op: 'close', ...failure(error) });
      }
      return;
    case 'exit':
      process.exit(0);
    default:
      say({ op: verb, ok: false, message: `unknown command ${JSON.stringify(line)}` });
  }
}

say({ op: 'ready', ok: true, pid: process.pid });
// One command at a time, in order: the parent waits for each answer before the next.
for await (const line of createInterface({ input: process.stdin })) await handle(line);
