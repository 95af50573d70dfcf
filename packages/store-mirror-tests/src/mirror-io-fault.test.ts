import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeBatches, type SealedBatch } from '@sluice/framing';
import {
  StorageError,
  createMirroredStorage,
  openPartition,
  type BatchIdentity,
  type PartitionStorage,
  type StorageErrorReason,
  type StorageReader,
  type StorageRecovery,
  type TruncateOptions,
} from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { bundleChild, releaseAll, requireTools, sh, type BundledChild } from '@sluice/store-file/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

/**
 * Invariants 2 and 9 on a mirror whose one location gets real I/O errors: libfiu fails
 * fdatasync or pwrite with EIO in the system calls of one file location only. libfiu cannot
 * match by path, so that location runs in a child process under `fiu-run` (store-file's
 * `remote-location.fixture.ts` hosts a real file storage there, driven over stdio by the
 * {@link ChildLocation} below); the mirror and its other file location run in the test process,
 * untouched by libfiu.
 *
 * Invariants: the commit whose write or sync failed on one location is not acknowledged, its
 * error names that location and the cause; the mirror stops acknowledging; after the fault is
 * gone, reopening (in a new child) repairs: both locations hold the same bytes, every
 * acknowledged commit is there once, and a retry of the failed command is applied once.
 */
const EIO = 5;
let scratch: string;
let bundled: BundledChild | undefined;
let setupError: unknown;
const children = new Set<ChildProcessWithoutNullStreams>();

beforeAll(async () => {
  try {
    await requireTools(['fiu-run', 'fiu-ctrl'], 'the mirror I/O-fault test');
    scratch = await mkdtemp('/var/tmp/sluice-mirror-io-fault-');
    bundled = await bundleChild(new URL('./remote-location.fixture.ts', import.meta.url), 'remote-location');
  } catch (error) {
    setupError = error;
  }
}, 120_000);

afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
});

afterAll(async () => {
  if (scratch !== undefined) await releaseAll(scratch);
  await bundled?.dispose();
});

interface WireIdentity {
  readonly lastSeq: number;
  readonly epoch: number;
  readonly digest: string;
}
const identity = (w: WireIdentity): BatchIdentity => ({ lastSeq: w.lastSeq, epoch: w.epoch, digest: Buffer.from(w.digest, 'hex') });

/** A file location in a child process (under libfiu when `fiuFifo` is set), as a PartitionStorage. */
class ChildLocation implements PartitionStorage {
  readonly kind = 'file (child process)';
  readonly capabilities: PartitionStorage['capabilities'];
  private durable: BatchIdentity = { lastSeq: 0, epoch: 0, digest: new Uint8Array(20) };
  private nextId = 0;
  private buffered = '';
  private stderr = '';
  private readonly waiting = new Map<number, (answer: { ok: boolean; value?: unknown; durable?: WireIdentity | null; error?: { reason: StorageErrorReason; message: string; errno?: string } }) => void>();
  private readyResolve: ((pid: number) => void) | undefined;
  readonly ready: Promise<number>;

  private constructor(
    private readonly proc: ChildProcessWithoutNullStreams,
    directory: string,
    private readonly fiuFifo: string | undefined,
  ) {
    this.capabilities = createFileStorage({ directory }).capabilities;
    this.ready = new Promise((resolve) => (this.readyResolve = resolve));
    proc.stdout.on('data', (d: Buffer) => {
      this.buffered += d.toString();
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const answer = JSON.parse(this.buffered.slice(0, nl));
        this.buffered = this.buffered.slice(nl + 1);
        if (answer.ready !== undefined) this.readyResolve?.(answer.ready);
        else {
          this.waiting.get(answer.id)?.(answer);
          this.waiting.delete(answer.id);
        }
      }
    });
    proc.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    proc.on('exit', () => {
      children.delete(proc);
      for (const w of this.waiting.values()) w({ ok: false, error: { reason: 'Unavailable', message: `location process exited: ${this.stderr}` } });
      this.waiting.clear();
    });
  }

  static async start(directory: string, withFiu: boolean): Promise<ChildLocation> {
    const env = { ...process.env, UV_USE_IO_URING: '0' };
    const fifo = withFiu ? join(scratch, `fiu-${Date.now()}-${Math.random().toString(36).slice(2)}`) : undefined;
    const script = bundled!.script;
    const proc = fifo === undefined ? spawn(process.execPath, [script, directory], { env }) : spawn('fiu-run', ['-x', '-f', fifo, process.execPath, script, directory], { env });
    children.add(proc);
    const location = new ChildLocation(proc, directory, fifo);
    location.pid = await location.ready;
    return location;
  }

  pid = 0;

  /** Runs a libfiu control command in the child, e.g. `enable name=posix/io/sync/fdatasync,failinfo=5`. */
  async fiu(command: string): Promise<void> {
    if (this.fiuFifo === undefined) throw new Error('this location runs without libfiu');
    await sh('fiu-ctrl', ['-f', this.fiuFifo, '-c', command, String(this.pid)]);
  }

  private async call<T>(op: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    const answer = await new Promise<Parameters<ChildLocation['waiting'] extends Map<number, infer F> ? F : never>[0]>((resolve) => {
      this.waiting.set(id, resolve);
      this.proc.stdin.write(`${JSON.stringify({ id, op, args })}\n`);
    });
    if (answer.durable) this.durable = identity(answer.durable);
    if (!answer.ok) throw new StorageError(answer.error!.reason, `${answer.error!.message}${answer.error!.errno ? ` (${answer.error!.errno})` : ''}`);
    return answer.value as T;
  }

  async open(): Promise<StorageRecovery> {
    const r = await this.call<{ lastSeq: number; head: WireIdentity; droppedBytes: number; droppedSeqs: number; droppedReason?: string }>('open');
    return { ...r, head: identity(r.head) };
  }
  write(bytes: Uint8Array, firstSeq: number, lastSeq: number): Promise<void> {
    return this.call('write', Buffer.from(bytes).toString('base64'), firstSeq, lastSeq);
  }
  async sync(): Promise<BatchIdentity> {
    return identity(await this.call<WireIdentity>('sync'));
  }
  durableHead(): BatchIdentity {
    return this.durable;
  }
  async truncate(afterSeq: number, options: TruncateOptions = {}): Promise<BatchIdentity> {
    return identity(await this.call<WireIdentity>('truncate', afterSeq, options.operatorReason));
  }
  async head(): Promise<BatchIdentity> {
    return identity(await this.call<WireIdentity>('head'));
  }
  lastSeq(): Promise<number> {
    return this.call('lastSeq');
  }
  async identityAt(seq: number): Promise<BatchIdentity | undefined> {
    const w = await this.call<WireIdentity | null>('identityAt', seq);
    return w === null ? undefined : identity(w);
  }
  async *read(fromSeq: number, toSeq: number): AsyncIterable<SealedBatch> {
    for (const b64 of await this.call<string[]>('read', fromSeq, toSeq)) yield* decodeBatches(Buffer.from(b64, 'base64')).batches;
  }
  // eslint-disable-next-line require-yield
  async *tail(): AsyncIterable<SealedBatch> {
    throw new StorageError('Unsupported', 'a child-process location does not tail: read from the mirror');
  }
  openReader(): Promise<StorageReader> {
    return Promise.reject(new StorageError('Unsupported', 'a child-process location has no reader in another process'));
  }
  async close(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const gone = new Promise((resolve) => this.proc.once('exit', resolve));
    await this.call('close').catch(() => undefined);
    await gone;
  }
}

const te = new TextEncoder();

async function commitsOf(directory: string): Promise<{ ids: string[]; batches: string[] }> {
  const partition = await openPartition({ storage: createFileStorage({ directory }), name: 'check' });
  const ids: string[] = [];
  try {
    for await (const e of partition.read()) if (e.commitFirst) ids.push(e.headers?.commandIds[0] ?? '?');
  } finally {
    await partition.close();
  }
  const storage = createFileStorage({ directory });
  await storage.open();
  const batches: string[] = [];
  try {
    for await (const b of storage.read(1, Number.MAX_SAFE_INTEGER)) batches.push(Buffer.from(b.bytes).toString('base64'));
  } finally {
    await storage.close();
  }
  return { ids, batches };
}

async function failOneLocation(name: string, failpoint: string): Promise<void> {
  if (setupError !== undefined) throw setupError;
  const localDir = join(scratch, name, 'local');
  const childDir = join(scratch, name, 'child');
  await mkdir(localDir, { recursive: true });
  const mirrorOf = (child: ChildLocation) =>
    createMirroredStorage({
      locations: [
        { storage: createFileStorage({ directory: localDir, fsync: 'commit', segmentBytes: 1024 * 1024 }), directory: localDir, label: 'local' },
        { storage: child, label: 'faulty' },
      ],
    });
  const append = (p: Awaited<ReturnType<typeof openPartition>>, id: string) => p.append({ streamId: 's', commandId: id, events: [{ type: 'E', data: te.encode(id) }] });

  const faulty = await ChildLocation.start(childDir, true);
  let partition = await openPartition({ storage: mirrorOf(faulty), name });
  for (const id of ['a-1', 'a-2', 'a-3']) expect((await append(partition, id)).duplicate).toBe(false);
  await faulty.fiu(`enable name=${failpoint},failinfo=${EIO}`);
  const failed = await append(partition, 'x-1').catch((e: unknown) => e as Error);
  expect(failed, 'the commit whose write or sync failed on one location is not acknowledged').toBeInstanceOf(Error);
  expect((failed as Error).message, 'its error names the location and the cause').toMatch(/location "faulty" \(file \(child process\), index 1\) (write|sync) failed: .*(EIO|I\/O error|input\/output)/i);
  const later = await append(partition, 'y-1').catch((e: unknown) => e as Error);
  expect(later, 'the mirror stops acknowledging').toBeInstanceOf(Error);
  await faulty.fiu(`disable name=${failpoint}`);
  await partition.close().catch(() => undefined);
  await faulty.close();

  // The fault is gone: a new process for that location, and the mirror reopens and repairs.
  const healed = await ChildLocation.start(childDir, false);
  partition = await openPartition({ storage: mirrorOf(healed), name });
  const retried = await append(partition, 'x-1');
  // Open either cut the unacknowledged commit everywhere (the retry writes it again) or completed
  // it on the healed location and synced it there (the retry is its duplicate): at seq 4 either way.
  expect(retried.firstSeq, 'the failed command is applied once, right after the acknowledged ones').toBe(4);
  expect((await append(partition, 'a-2')).duplicate, 'an acknowledged command is a duplicate').toBe(true);
  await partition.close();
  await healed.close();

  const local = await commitsOf(localDir);
  const child = await commitsOf(childDir);
  expect(local.ids, 'every acknowledged commit is there once, then the retried one').toEqual(['a-1', 'a-2', 'a-3', 'x-1']);
  expect(child.batches, 'both locations hold the same bytes').toEqual(local.batches);
}

describe('a mirror of two file locations, one failing with real I/O errors (libfiu)', () => {
  it('fdatasync fails with EIO on one location: not acknowledged, the error names it, reopening repairs', { timeout: 120_000 }, async () => {
    await failOneLocation('sync-eio', 'posix/io/sync/fdatasync');
  });

  it('pwrite fails with EIO on one location: not acknowledged, the error names it, reopening repairs', { timeout: 120_000 }, async () => {
    await failOneLocation('write-eio', 'posix/io/rw/pwrite');
  });
});
