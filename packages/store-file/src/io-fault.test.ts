import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleChild, type BundledChild } from './testing/bundle-child.fixture.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireTools, sh } from './testing/loop-device.fixture.js';

/**
 * Real I/O errors from the file store's system calls, injected with libfiu (`fiu-run -x` preloads
 * it into a child Node process; `fiu-ctrl` turns failpoints on and off while it runs; Node must
 * run with UV_USE_IO_URING=0 so its file I/O goes through the libc calls libfiu wraps).
 *
 * Invariants (DESIGN.md 2 and 9):
 * - an append whose write or sync fails is not acknowledged, and the partition stops
 *   acknowledging: later appends are rejected with a typed error;
 * - after a failed write or sync, nothing written since the last successful sync is ever served
 *   as committed or as a duplicate's result until it has been written and synced again. After a
 *   failed fdatasync the page cache is no proof of durability (Linux marks the pages it could not
 *   write back clean, and the next fsync reports success without writing them), so reopening must
 *   not serve the failed commit, and a retry of its command id must be applied as a new commit,
 *   not answered `duplicate: true`;
 * - every commit acknowledged before the fault is still there, with its seqs, and still
 *   answers a retry as a duplicate.
 *
 * Spec assertions use expect.soft, so one run lists every broken one.
 */
let scratch: string;
let childScript: string;
let bundled: BundledChild | undefined;
const children = new Set<Child>();
const EIO = 5;
const ENOSPC = 28;

/**
 * Set-up problems (a missing tool, no root, no loop device) fail every test with the reason,
 * rather than failing beforeAll: a failed beforeAll reports the tests as skipped, and a fault
 * test must never look skipped or passed when it could not run.
 */
let setupError: unknown;
function ready(): void {
  if (setupError !== undefined) throw setupError;
}

beforeAll(async () => {
  try {
    await requireTools(['fiu-run', 'fiu-ctrl'], 'the I/O-fault test');
    scratch = await mkdtemp('/var/tmp/sluice-io-fault-');
    bundled = await bundleChild(new URL('./io-fault-child.fixture.ts', import.meta.url), 'io-fault-child');
    childScript = bundled.script;
  } catch (error) {
    setupError = error;
  }
});

afterEach(() => {
  for (const child of children) child.kill();
});

afterAll(async () => {
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  await bundled?.dispose();
});

interface Answer {
  readonly op: string;
  readonly ok: boolean;
  readonly id?: string;
  readonly lastSeq?: number;
  readonly firstSeq?: number;
  readonly duplicate?: boolean;
  readonly name?: string;
  readonly code?: string;
  readonly reason?: string;
  readonly errno?: string;
  readonly message?: string;
  readonly commits?: Array<[string, number, number]>;
  readonly problems?: string[];
}

/** The fixture process, driven one command at a time. */
class Child {
  private readonly waiting: Array<(answer: Answer) => void> = [];
  private buffered = '';
  private stderr = '';
  private exited = false;
  pid = 0;

  private constructor(
    private readonly proc: ChildProcessWithoutNullStreams,
    private readonly fiuFifo: string | undefined,
  ) {
    proc.stdout.on('data', (d: Buffer) => {
      this.buffered += d.toString();
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        this.waiting.shift()?.(JSON.parse(line) as Answer);
      }
    });
    proc.stderr.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    proc.on('exit', () => {
      this.exited = true;
      children.delete(this);
      for (const w of this.waiting.splice(0)) w({ op: 'exit', ok: false, message: `child exited: ${this.stderr}` });
    });
  }

  /** Starts the fixture on `directory`, under fiu-run (every failpoint off) when `withFiu`. */
  static async start(directory: string, fsync: string, withFiu: boolean): Promise<Child> {
    const env = { ...process.env, UV_USE_IO_URING: '0' };
    const fifo = withFiu ? join(scratch, 'fiu-ctrl') : undefined;
    const child =
      fifo === undefined
        ? spawn(process.execPath, [childScript, directory, fsync], { env })
        : spawn('fiu-run', ['-x', '-f', fifo, process.execPath, childScript, directory, fsync], { env });
    const driver = new Child(child, fifo);
    children.add(driver);
    const ready = await driver.next();
    if (ready.op !== 'ready') throw new Error(`io-fault child did not start: ${JSON.stringify(ready)}`);
    driver.pid = (ready as Answer & { pid: number }).pid;
    return driver;
  }

  private next(): Promise<Answer> {
    if (this.exited) return Promise.resolve({ op: 'exit', ok: false, message: `child exited: ${this.stderr}` });
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Sends one command and waits for its answer. */
  send(command: string): Promise<Answer> {
    const answer = this.next();
    this.proc.stdin.write(`${command}\n`);
    return answer;
  }

  /** Runs a libfiu control command (`enable name=…,failinfo=…`, `disable name=…`) in the child. */
  async fiu(command: string): Promise<void> {
    if (this.fiuFifo === undefined) throw new Error('this child runs without libfiu');
    await sh('fiu-ctrl', ['-f', this.fiuFifo, '-c', command, String(this.pid)]);
  }

  async exit(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.stdin.write('exit\n');
    await gone;
  }

  kill(): void {
    if (!this.exited) this.proc.kill('SIGKILL');
  }
}

type Reopen = 'the same process' | 'a new process';

/**
 * The scenario: three commits acknowledged, then `failpoint` fails the next append; a second
 * append and a retry of the failed one in the faulted partition; the failpoint goes off; the
 * partition is closed and opened again (in the same process or a new one) and the failed command
 * is retried; a last, fault-free process reads the whole log.
 */
async function failedAppendScenario(name: string, failpoint: string, errno: number, reopenIn: Reopen, expectedReason: string): Promise<void> {
  const directory = join(scratch, name);
  let child = await Child.start(directory, 'commit', true);
  expect((await child.send('open')).ok, 'the partition opens').toBe(true);
  const acked: Answer[] = [];
  for (const id of ['a-1', 'a-2', 'a-3']) {
    const answer = await child.send(`append ${id}`);
    expect(answer, `append ${id} before the fault`).toMatchObject({ ok: true, duplicate: false });
    acked.push(answer);
  }
  const lastAcked = acked[2].lastSeq as number;

  await child.fiu(`enable name=${failpoint},failinfo=${errno}`);
  const failed = await child.send('append x-1');
  expect.soft(failed.ok, `the append whose ${failpoint} failed is not acknowledged: ${JSON.stringify(failed)}`).toBe(false);
  expect.soft({ code: failed.code, reason: failed.reason }, 'it is rejected with the storage error').toEqual({ code: 'SLUICE_STORAGE', reason: expectedReason });
  const later = await child.send('append y-1');
  expect.soft(later.ok, `the partition stops acknowledging after the failure: ${JSON.stringify(later)}`).toBe(false);
  expect.soft(later.code, 'later appends are rejected with PartitionFaultedError').toBe('SLUICE_PARTITION_FAULTED');
  const retryFaulted = await child.send('append x-1');
  expect.soft(retryFaulted.ok, `a retry of the failed command in the faulted partition is rejected: ${JSON.stringify(retryFaulted)}`).toBe(false);
  await child.fiu(`disable name=${failpoint}`);

  expect((await child.send('close')).ok, 'the faulted partition closes').toBe(true);
  if (reopenIn === 'a new process') {
    await child.exit();
    child = await Child.start(directory, 'commit', false);
  }
  const reopened = await child.send('open');
  expect(reopened.ok, `the partition reopens without the fault: ${JSON.stringify(reopened)}`).toBe(true);
  expect.soft(reopened.lastSeq, `after reopening, lastSeq is the last acknowledged seq (${lastAcked}): the failed commit is not served as committed`).toBe(lastAcked);
  const read = await child.send('read');
  expect.soft(
    read.commits?.map(([id]) => id),
    'reading after reopening serves the acknowledged commits only, not the failed one nor the one after it',
  ).toEqual(['a-1', 'a-2', 'a-3']);
  const retry = await child.send('append x-1');
  expect(retry.ok, `the retry of the failed command succeeds: ${JSON.stringify(retry)}`).toBe(true);
  expect.soft(
    { duplicate: retry.duplicate, firstSeq: retry.firstSeq },
    'the retry of the failed command is written again as a new commit, right after the last acknowledged one, not answered as a duplicate of bytes whose sync failed',
  ).toEqual({ duplicate: false, firstSeq: lastAcked + 1 });
  const retryAcked = await child.send('append a-2');
  expect.soft(retryAcked, 'a retry of a command acknowledged before the fault is its duplicate').toMatchObject({
    ok: true,
    duplicate: true,
    firstSeq: acked[1].firstSeq,
    lastSeq: acked[1].lastSeq,
  });
  expect((await child.send('close')).ok).toBe(true);
  await child.exit();

  // A fresh process, no fault: the whole log reads back, gapless, each command once.
  const reader = await Child.start(directory, 'commit', false);
  expect((await reader.send('open')).ok).toBe(true);
  const final = await reader.send('read');
  expect(final.problems, 'the log reads back gapless and whole').toEqual([]);
  expect(final.commits, 'the log holds the acknowledged commits and the retried one, each once').toEqual([
    ...acked.map((a) => [a.id, a.firstSeq, a.lastSeq]),
    ['x-1', retry.firstSeq, retry.lastSeq],
  ]);
  await reader.send('close');
  await reader.exit();
}

describe('file store under injected I/O errors (libfiu)', () => {
  for (const reopenIn of ['the same process', 'a new process'] as const) {
    it(`(a) fdatasync fails (EIO): the append is refused, the partition stops, and after reopening in ${reopenIn} the failed commit is neither served nor a duplicate`, async () => {
      ready();
      await failedAppendScenario(`sync-eio-${reopenIn.replace(/ /g, '-')}`, 'posix/io/sync/fdatasync', EIO, reopenIn, 'Unavailable');
    });
  }

  it('(b) write fails with EIO: the append is refused, the partition stops, and after reopening the failed commit is neither served nor a duplicate', async () => {
    ready();
    await failedAppendScenario('write-eio', 'posix/io/rw/pwrite', EIO, 'the same process', 'Unavailable');
  });

  it('(b) write fails with ENOSPC: the append is refused as Full, the partition stops, and after reopening the failed commit is neither served nor a duplicate', async () => {
    ready();
    await failedAppendScenario('write-enospc', 'posix/io/rw/pwrite', ENOSPC, 'a new process', 'Full');
  });

  it('(c) interval:100ms: a failed background fdatasync stops the partition from acknowledging', async () => {
    ready();
    const child = await Child.start(join(scratch, 'interval-sync-eio'), 'interval:100ms', true);
    expect((await child.send('open')).ok).toBe(true);
    expect(await child.send('append i-1')).toMatchObject({ ok: true });
    await child.fiu(`enable name=posix/io/sync/fdatasync,failinfo=${EIO}`);
    // Appends are written to the OS and acknowledged under interval until the 100 ms timer's sync
    // runs and fails (it may fail on i-1's bytes before any of them: the timer is not ours to
    // time); from then on the partition stops acknowledging. The child gives up after 10 s.
    const after = await child.send('append-until-refused i-2');
    expect.soft(after.ok, `after the failed sync the partition stops acknowledging: ${JSON.stringify(after)}`).toBe(false);
    expect.soft(after.errno, `the refusal carries the sync's cause: ${JSON.stringify(after)}`).toBe('EIO');
    const later = await child.send('append i-4');
    expect.soft(later.code, `later appends are rejected with PartitionFaultedError: ${JSON.stringify(later)}`).toBe('SLUICE_PARTITION_FAULTED');
    await child.fiu('disable name=posix/io/sync/fdatasync');
    await child.send('close');
    const reopened = await child.send('open');
    expect(reopened.ok, `the partition reopens without the fault: ${JSON.stringify(reopened)}`).toBe(true);
    const read = await child.send('read');
    expect(read.problems, 'the log reads back gapless and whole').toEqual([]);
    await child.send('close');
    await child.exit();
  });
});
