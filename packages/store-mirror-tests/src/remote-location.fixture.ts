/**
 * A file location in its own process, for the mirror I/O-fault test: the test runs this child
 * under `fiu-run` so libfiu fails the system calls of this one location only (libfiu cannot
 * match by path), while the mirror and its other location run in the test process.
 *
 * Protocol: one JSON request per stdin line `{ id, op, args }`, one JSON answer per stdout line
 * `{ id, ok: true, value, durable }` or `{ id, ok: false, error: { reason, message, errno } }`
 * (`durable` is the storage's durable head after the call). Identities travel with hex digests,
 * batches as base64 bytes. The first line is `{ "ready": pid }`.
 *
 * argv: <directory>
 */
import { createInterface } from 'node:readline';
import { isStorageError, type BatchIdentity } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';

const [directory] = process.argv.slice(2);
const storage = createFileStorage({ directory, fsync: 'commit', segmentBytes: 1024 * 1024 });
const hex = (id: BatchIdentity | undefined) => (id === undefined ? null : { lastSeq: id.lastSeq, epoch: id.epoch, digest: Buffer.from(id.digest).toString('hex') });
const say = (answer: object): void => {
  process.stdout.write(`${JSON.stringify(answer)}\n`);
};

async function run(op: string, args: unknown[]): Promise<unknown> {
  switch (op) {
    case 'open': {
      const r = await storage.open();
      return { lastSeq: r.lastSeq, head: hex(r.head), droppedBytes: r.droppedBytes, droppedSeqs: r.droppedSeqs, droppedReason: r.droppedReason };
    }
    case 'write':
      return storage.write(Buffer.from(args[0] as string, 'base64'), args[1] as number, args[2] as number);
    case 'sync':
      return hex(await storage.sync());
    case 'truncate':
      return hex(await storage.truncate(args[0] as number, { operatorReason: args[1] as string | undefined }));
    case 'head':
      return hex(await storage.head());
    case 'lastSeq':
      return storage.lastSeq();
    case 'identityAt':
      return hex(await storage.identityAt(args[0] as number));
    case 'read': {
      const out: string[] = [];
      for await (const b of storage.read(args[0] as number, args[1] as number)) out.push(Buffer.from(b.bytes).toString('base64'));
      return out;
    }
    case 'close':
      return storage.close();
    default:
      throw new Error(`unknown op ${op}`);
  }
}

say({ ready: process.pid });
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const { id, op, args } = JSON.parse(line) as { id: number; op: string; args: unknown[] };
  try {
    const value = await run(op, args);
    let durable: unknown = null;
    try {
      durable = hex(storage.durableHead());
    } catch {
      // closed or never opened
    }
    say({ id, ok: true, value: value ?? null, durable });
  } catch (error) {
    const e = error as Error & { cause?: { code?: string } };
    say({ id, ok: false, error: { reason: isStorageError(error) ? error.reason : 'Unavailable', message: e.message, errno: e.cause?.code } });
  }
  if (op === 'close') break;
}
// stdin would keep the process alive: the parent waits for the exit after `close`.
process.exit(0);
