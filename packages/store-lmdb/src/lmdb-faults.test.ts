import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PartitionFaultedError,
  StorageError,
  isStorageError,
  openPartition,
  type CommitResult,
  type Partition,
  type StorageErrorReason,
} from '@sluice/store';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLmdbStorage, openLmdbReader, type LmdbStorageOptions } from './index.js';
import { MDB, mapLmdbError, unwrapCommitError } from './lmdb-errors.js';

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-lmdb-'));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** Appends `size`-byte events, one per commit, until one fails; returns what was acknowledged and the failure. */
async function fillUntilFailure(partition: Partition, size: number, max: number): Promise<{ acked: CommitResult[]; failure: unknown }> {
  const acked: CommitResult[] = [];
  for (let i = 0; i < max; i++) {
    const data = new Uint8Array(size).fill(i & 0xff);
    data.set(new TextEncoder().encode(`event-${i}`));
    try {
      acked.push(await partition.append({ streamId: `s-${i % 3}`, commandId: `c-${i}`, events: [{ type: 'Filled', data }] }));
    } catch (failure) {
      return { acked, failure };
    }
  }
  throw new Error(`no append failed after ${max} appends`);
}

/** Invariant checked after every fault: every acknowledged commit is present, in order, and nothing else is. */
async function expectExactly(partition: Partition, acked: readonly CommitResult[]): Promise<void> {
  const seqs: number[] = [];
  for await (const event of partition.read()) {
    seqs.push(event.seq);
    expect(text(event.payload.subarray(0, 16))).toContain(`event-${event.seq - 1}`);
  }
  expect(seqs).toEqual(acked.map((r) => r.firstSeq));
  expect(partition.lastSeq).toBe(acked.at(-1)?.lastSeq ?? 0);
}

describe('a partition that outgrows mapSize', () => {
  it('rejects the append with reason Full, faults, keeps serving reads, and keeps every acknowledged commit for a reopen with a bigger mapSize', async () => {
    let partition = await openPartition({ storage: createLmdbStorage({ directory, mapSize: 1024 * 1024 }) });
    const { acked, failure } = await fillUntilFailure(partition, 16 * 1024, 1000);
    expect(acked.length).toBeGreaterThan(10);
    expect(isStorageError(failure)).toBe(true);
    expect(failure).toMatchObject({ reason: 'Full' satisfies StorageErrorReason });
    expect((failure as Error).message).toMatch(/raise mapSize/);
    await expect(partition.append({ streamId: 'after', events: [{ type: 'E', data: new Uint8Array(1) }] })).rejects.toBeInstanceOf(PartitionFaultedError);
    await expectExactly(partition, acked);
    await partition.close();

    partition = await openPartition({ storage: createLmdbStorage({ directory, mapSize: 8 * 1024 * 1024 }) });
    try {
      expect(partition.recovery.droppedBytes).toBe(0);
      await expectExactly(partition, acked);
      const next = await partition.append({ streamId: 's-0', commandId: `c-${acked.length}`, events: [{ type: 'Filled', data: new TextEncoder().encode(`event-${acked.length}`) }] });
      expect(next.firstSeq).toBe(acked.length + 1);
      expect((await partition.append({ streamId: 's-1', commandId: 'c-1', events: [{ type: 'E', data: new Uint8Array(1) }] })).duplicate).toBe(true);
    } finally {
      await partition.close();
    }
  });
});

/** Mounts a tmpfs of `sizeBytes` at `at`; false when this process may not mount (not root, no CAP_SYS_ADMIN). */
function mountTmpfs(at: string, sizeBytes: number, remount = false): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `${remount ? 'remount,' : ''}size=${sizeBytes}`, 'tmpfs', at], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const probe = await mkdtemp(join(tmpdir(), 'sluice-lmdb-probe-'));
const canMount = process.platform === 'linux' && mountTmpfs(probe, 1024 * 1024);
if (canMount) execFileSync('umount', [probe]);
await rm(probe, { recursive: true, force: true });

describe('a full disk', () => {
  it.runIf(canMount)('rejects the append with reason Full, faults, and keeps every acknowledged commit once there is room again (tmpfs; needs root)', async () => {
    const mountPoint = await mkdtemp(join(tmpdir(), 'sluice-lmdb-full-'));
    expect(mountTmpfs(mountPoint, 4 * 1024 * 1024)).toBe(true);
    // lmdb-js reports a failed commit with console.error as well as by rejecting.
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const partitionDirectory = join(mountPoint, 'p');
      let partition = await openPartition({ storage: createLmdbStorage({ directory: partitionDirectory }) });
      const { acked, failure } = await fillUntilFailure(partition, 64 * 1024, 1000);
      expect(acked.length).toBeGreaterThan(10);
      expect(failure).toMatchObject({ reason: 'Full' satisfies StorageErrorReason });
      expect((failure as Error).message).toMatch(/disk space/);
      await expect(partition.append({ streamId: 'after', events: [{ type: 'E', data: new Uint8Array(1) }] })).rejects.toBeInstanceOf(PartitionFaultedError);
      await partition.close();

      expect(mountTmpfs(mountPoint, 16 * 1024 * 1024, true)).toBe(true);
      partition = await openPartition({ storage: createLmdbStorage({ directory: partitionDirectory }) });
      try {
        await expectExactly(partition, acked);
        expect((await partition.append({ streamId: 'after', events: [{ type: 'E', data: new Uint8Array(1) }] })).firstSeq).toBe(acked.length + 1);
      } finally {
        await partition.close();
      }
    } finally {
      consoleError.mockRestore();
      execFileSync('umount', [mountPoint]);
      await rm(mountPoint, { recursive: true, force: true });
    }
  });
});

describe('locations that cannot hold a partition', () => {
  const openError = (options: LmdbStorageOptions): Promise<unknown> =>
    openPartition({ storage: createLmdbStorage(options) }).then(
      async (p) => {
        await p.close();
        return 'opened';
      },
      (e: unknown) => e,
    );

  it('reports a missing directory as NotFound when createDirectory is false', async () => {
    const error = await openError({ directory: join(directory, 'missing'), createDirectory: false });
    expect(error).toBeInstanceOf(StorageError);
    expect(error).toMatchObject({ reason: 'NotFound' });
    expect((error as Error).message).toMatch(/createDirectory/);
  });

  it('reports a path through a regular file as NotFound', async () => {
    await writeFile(join(directory, 'a-file'), 'not a directory');
    const error = await openError({ directory: join(directory, 'a-file', 'partition') });
    expect(error).toMatchObject({ reason: 'NotFound' });
    expect((error as Error).message).toMatch(/check the directory path/);
  });

  it.runIf(process.platform === 'linux')('reports a location it may not create as Unauthorized', async () => {
    // sysfs refuses mkdir to everyone, root included (chmod does not stop root).
    const error = await openError({ directory: `/sys/sluice-lmdb-${process.pid}` });
    expect(error).toMatchObject({ reason: 'Unauthorized' });
    expect((error as Error).message).toMatch(/permission denied/);
  });

  it('refuses invalid options with reason Invalid', () => {
    for (const options of [{ directory: '' }, { directory, fsync: 'sometimes' }, { directory, mapSize: 1000 }, { directory, mapSize: 1048576.5 }]) {
      let error: unknown;
      try {
        createLmdbStorage(options as LmdbStorageOptions);
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(options)).toMatchObject({ reason: 'Invalid' });
    }
  });
});

describe('writers and readers in one process', () => {
  it('refuses the writer while a read-only reader opened first holds the environment, then opens once it is closed', async () => {
    const first = await openPartition({ storage: createLmdbStorage({ directory }) });
    await first.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array(1) }] });
    await first.close();
    const reader = await openLmdbReader({ directory });
    const refused = await openPartition({ storage: createLmdbStorage({ directory }) }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ reason: 'Locked' });
    expect((refused as Error).message).toMatch(/close the reader before opening the writer/);
    expect(await reader.lastSeq()).toBe(1);
    await reader.close();
    const second = await openPartition({ storage: createLmdbStorage({ directory }) });
    expect(second.lastSeq).toBe(1);
    await second.close();
  });

  for (const fsync of ['commit', 'interval:50ms', 'none'] as const) {
    it(`keeps a reader opened after the writer working after the writer closes, and lets a writer reopen beside it (fsync ${fsync})`, async () => {
      let partition = await openPartition({ storage: createLmdbStorage({ directory, fsync }) });
      await partition.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array(1) }] });
      const reader = await openLmdbReader({ directory });
      try {
        expect(await reader.lastSeq()).toBe(1);
        await partition.close();
        expect(await reader.lastSeq()).toBe(1);
        partition = await openPartition({ storage: createLmdbStorage({ directory, fsync }) });
        await partition.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array(2) }] });
        expect(await reader.lastSeq()).toBe(2);
        await partition.close();
      } finally {
        await reader.close();
      }
    });
  }

  it('refuses a writer with another fsync policy while a reader keeps the first environment open', async () => {
    const partition = await openPartition({ storage: createLmdbStorage({ directory, fsync: 'commit' }) });
    const reader = await openLmdbReader({ directory });
    try {
      await partition.close();
      const refused = await openPartition({ storage: createLmdbStorage({ directory, fsync: 'none' }) }).catch((e: unknown) => e);
      expect(refused).toMatchObject({ reason: 'Invalid' });
      expect((refused as Error).message).toMatch(/close the readers before reopening the writer/);
    } finally {
      await reader.close();
    }
  });

  it('refuses a reader where nothing was ever written with NotFound', async () => {
    await expect(openLmdbReader({ directory })).rejects.toMatchObject({ reason: 'NotFound' });
    await expect(openLmdbReader({ directory: join(directory, 'missing') })).rejects.toMatchObject({ reason: 'NotFound' });
  });
});

describe('lmdb error mapping', () => {
  const lmdbError = (code: number, message: string): Error => Object.assign(new Error(message), { code });
  const cases: Array<[string, unknown, StorageErrorReason, RegExp]> = [
    ['MDB_MAP_FULL', lmdbError(MDB.MAP_FULL, 'MDB_MAP_FULL: Environment mapsize limit reached'), 'Full', /raise mapSize/],
    ['ENOSPC from lmdb', lmdbError(28, 'No space left on device'), 'Full', /free disk space/],
    ['EDQUOT', lmdbError(122, 'Disk quota exceeded'), 'Full', /free disk space/],
    ['ENOENT from lmdb', lmdbError(2, 'No such file or directory'), 'NotFound', /check the directory path/],
    ['ENOTDIR from mkdir', Object.assign(new Error('ENOTDIR: not a directory'), { code: 'ENOTDIR' }), 'NotFound', /check the directory path/],
    ['EACCES', lmdbError(13, 'Permission denied'), 'Unauthorized', /owner and mode/],
    ['EROFS', lmdbError(30, 'Read-only file system'), 'Unauthorized', /writable/],
    ['MDB_CORRUPTED', lmdbError(MDB.CORRUPTED, 'MDB_CORRUPTED: Located page was wrong type'), 'Corrupt', /restore/],
    ['MDB_INVALID', lmdbError(MDB.INVALID, 'MDB_INVALID: File is not an LMDB file'), 'Corrupt', /check the path/],
    ['MDB_READERS_FULL', lmdbError(MDB.READERS_FULL, 'MDB_READERS_FULL'), 'Unavailable', /reader slot/],
    ['MDB_PANIC', lmdbError(MDB.PANIC, 'MDB_PANIC'), 'Unavailable', /reopen/],
    ['EIO', lmdbError(5, 'Input/output error'), 'Unavailable', /check the disk/],
    ['anything else', new Error('surprise'), 'Unavailable', /surprise/],
  ];
  for (const [name, error, reason, hint] of cases) {
    it(`maps ${name} to ${reason}`, () => {
      const mapped = mapLmdbError(error, { directory: '/data/p', mapSize: 1 << 20 });
      expect(mapped).toBeInstanceOf(StorageError);
      expect(mapped).toMatchObject({ reason, cause: error });
      expect(mapped.message).toMatch(/^\[sluice\/store-lmdb\] \/data\/p: /);
      expect(mapped.message).toMatch(hint);
    });
  }

  it('unwraps the real error of a failed lmdb-js commit', async () => {
    const real = lmdbError(28, 'No space left on device');
    const commitError = Promise.reject(real);
    commitError.catch(() => undefined);
    const wrapper = Object.assign(new Error('Commit failed (see commitError for details)'), { commitError });
    expect(await unwrapCommitError(wrapper)).toBe(real);
    expect(await unwrapCommitError(real)).toBe(real);
  });
});
