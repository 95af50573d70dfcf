import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isStorageError } from './errors.js';
import { LOCK_FILE, WriterLock, locationIdentity } from './writer-lock.js';

/**
 * Invariant: at most one writer lock per directory at any moment, decided by the kernel:
 * whatever path names the directory, whichever process or PID namespace asks, however the last
 * holder died, and whatever the lock file says.
 */

let bundleDirectory: string;
let childScript: string;
let directory: string;
const held: WriterLock[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  // Inside the workspace: the lock loads its native addon from node_modules at run time.
  const cache = fileURLToPath(new URL('../../../node_modules/.cache/', import.meta.url));
  await mkdir(cache, { recursive: true });
  bundleDirectory = await mkdtemp(join(cache, 'sluice-writer-lock-'));
  childScript = join(bundleDirectory, 'child.mjs');
  // The child prints "ready <pid>"; with `wait` it waits for a line on stdin first (so several
  // children race for the lock at one moment); then it prints "locked <pid>" and holds the lock
  // until stdin ends, or prints "refused <reason> <message>" and exits.
  await build({
    stdin: {
      contents: `
        import { createInterface } from 'node:readline';
        import { WriterLock } from './writer-lock.ts';
        const [directory, wait] = process.argv.slice(2);
        const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
        process.stdout.write('ready ' + process.pid + '\\n');
        if (wait === 'wait') await lines.next();
        try {
          const lock = await WriterLock.acquire(directory, 'child');
          process.stdout.write('locked ' + process.pid + '\\n');
          while (!(await lines.next()).done);
          await lock.release();
        } catch (e) {
          process.stdout.write('refused ' + (e.reason ?? 'error') + ' ' + e.message + '\\n');
        }
        process.exit(0);`,
      resolveDir: fileURLToPath(new URL('.', import.meta.url)),
      loader: 'ts',
    },
    outfile: childScript,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'silent',
  });
});

afterAll(async () => {
  await rm(bundleDirectory, { recursive: true, force: true });
});

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-lock-'));
});

afterEach(async () => {
  for (const lock of held.splice(0)) await lock.release();
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await rm(directory, { recursive: true, force: true });
});

async function acquire(path: string): Promise<WriterLock> {
  const lock = await WriterLock.acquire(path, 'test', 'a test reader');
  held.push(lock);
  return lock;
}

function refusal(path: string): Promise<unknown> {
  return acquire(path).then(
    () => undefined,
    (error: unknown) => error,
  );
}

/** A child process and the lines it prints. */
interface Child {
  readonly process: ChildProcess;
  /** Resolves with the next line that starts with one of `prefixes`. */
  next(...prefixes: string[]): Promise<string>;
  readonly exited: Promise<void>;
}

function startChild(target: string, options: { wait?: boolean; pidNamespace?: boolean } = {}): Child {
  const args = [childScript, target, ...(options.wait ? ['wait'] : [])];
  const child = options.pidNamespace
    ? spawn('unshare', ['--pid', '--fork', '--kill-child', '--mount-proc', process.execPath, ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
    : spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  let buffered = '';
  child.stdout?.on('data', (d: Buffer) => {
    buffered += d.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    lines.push(...parts);
    for (const wake of waiters.splice(0)) wake();
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  void exited.then(() => {
    for (const wake of waiters.splice(0)) wake();
  });
  let read = 0;
  const next = async (...prefixes: string[]): Promise<string> => {
    for (;;) {
      while (read < lines.length) {
        const line = lines[read++];
        if (prefixes.some((p) => line.startsWith(p))) return line;
      }
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`child exited before printing ${prefixes.join(' or ')}`);
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  return { process: child, next, exited };
}

describe('one process', () => {
  it('refuses a second lock on the directory through a symbolic link, naming the real path and this process', async () => {
    const link = join(await mkdtemp(join(tmpdir(), 'sluice-lock-link-')), 'partition');
    await symlink(directory, link);
    try {
      const first = await acquire(directory);
      const error = await refusal(link);
      expect(isStorageError(error)).toBe(true);
      expect(error).toMatchObject({ reason: 'Locked', retryable: false });
      expect((error as Error).message).toContain(`[sluice/test] ${link} (${first.location.realPath}) is open by another writer (pid ${process.pid}, this process)`);
      expect((error as Error).message).toContain('close the other writer first or read with a test reader');
      await first.release();
      expect((await acquire(link)).location.key).toBe(first.location.key);
    } finally {
      await rm(join(link, '..'), { recursive: true, force: true });
    }
  });

  it('refuses a relative spelling of a directory locked by its absolute path, and the reverse', async () => {
    const spelledRelative = relative(process.cwd(), directory);
    expect(spelledRelative).not.toBe(directory);
    const first = await acquire(directory);
    expect(await refusal(spelledRelative)).toMatchObject({ reason: 'Locked' });
    await first.release();
    await acquire(spelledRelative);
    expect(await refusal(directory)).toMatchObject({ reason: 'Locked' });
  });

  it('is released by release() (idempotent), keeps the lock file, and can be taken again', async () => {
    const first = await acquire(directory);
    expect(first.held).toBe(true);
    expect((await readFile(join(directory, LOCK_FILE), 'utf8')).split('\n').slice(0, 2)).toEqual([String(process.pid), hostname()]);
    await first.release();
    await first.release();
    expect(first.held).toBe(false);
    expect(await readFile(join(directory, LOCK_FILE), 'utf8')).toBe('');
    await acquire(directory);
  });

  it('is not blocked by a lock file naming a live unrelated process (PID reuse, an old PID-file lock)', async () => {
    for (const pid of [process.ppid, 1, process.pid]) {
      await writeFile(join(directory, LOCK_FILE), `${pid}\n${hostname()}\nearlier-life\n`);
      const lock = await acquire(directory);
      expect((await readFile(join(directory, LOCK_FILE), 'utf8')).split('\n')[0]).toBe(String(process.pid));
      await lock.release();
    }
  });

  it('maps a missing directory to NotFound and a symbolic link in place of the lock file to Invalid', async () => {
    expect(await refusal(join(directory, 'missing'))).toMatchObject({ reason: 'NotFound' });
    await writeFile(join(directory, 'file'), '');
    expect(await refusal(join(directory, 'file'))).toMatchObject({ reason: 'NotFound' });
    await symlink(join(directory, 'elsewhere'), join(directory, LOCK_FILE));
    const error = await refusal(directory);
    expect(error).toMatchObject({ reason: 'Invalid' });
    expect((error as Error).message).toMatch(/writer\.lock is a symbolic link: remove it/);
  });
});

describe('other processes', () => {
  it('lets the lock be taken at once after its holder is SIGKILLed (the kernel releases it)', async () => {
    const child = startChild(directory);
    const pid = (await child.next('locked', 'refused')).split(' ')[1];
    expect(pid).toBe(String(child.process.pid));
    const error = await refusal(directory);
    expect(error).toMatchObject({ reason: 'Locked' });
    expect((error as Error).message).toContain(`another writer (pid ${pid})`);
    child.process.kill('SIGKILL');
    await child.exited;
    // The dead holder's PID is still in the file: it does not matter.
    expect((await readFile(join(directory, LOCK_FILE), 'utf8')).split('\n')[0]).toBe(pid);
    await acquire(directory);
  });

  it('refuses a writer in another PID namespace, and is refused by it', async () => {
    const inside = startChild(directory, { pidNamespace: true });
    // PID 1 in its namespace: a PID in the file cannot tell the two writers apart.
    expect(await inside.next('locked', 'refused')).toBe('locked 1');
    expect(await refusal(directory)).toMatchObject({ reason: 'Locked' });
    inside.process.stdin?.end();
    await inside.exited;

    await acquire(directory);
    const refused = startChild(directory, { pidNamespace: true });
    expect(await refused.next('locked', 'refused')).toMatch(/^refused Locked .* is open by another writer/);
    await refused.exited;
  });

  // 60 process starts (~0.3 s each on a loaded machine): more than the default 30 s.
  it('never lets two children started at one moment both take the lock (30 rounds)', { timeout: 180_000 }, async () => {
    for (let round = 0; round < 30; round++) {
      const racers = [startChild(directory, { wait: true }), startChild(directory, { wait: true })];
      await Promise.all(racers.map((c) => c.next('ready')));
      for (const c of racers) c.process.stdin?.write('go\n');
      const outcomes = await Promise.all(racers.map((c) => c.next('locked', 'refused')));
      expect(outcomes.filter((o) => o.startsWith('locked')), `round ${round}: ${outcomes.join(' | ')}`).toHaveLength(1);
      expect(outcomes.filter((o) => o.startsWith('refused Locked'))).toHaveLength(1);
      for (const c of racers) c.process.stdin?.end();
      await Promise.all(racers.map((c) => c.exited));
    }
  });
});

describe('locationIdentity', () => {
  it('is the same for every spelling of a directory and differs between directories', async () => {
    const link = join(directory, 'link');
    await mkdir(join(directory, 'inner'));
    await symlink(join(directory, 'inner'), link);
    const [viaLink, viaRelative, viaDots, other] = await Promise.all([
      locationIdentity(link),
      locationIdentity(relative(process.cwd(), join(directory, 'inner'))),
      locationIdentity(join(directory, 'inner', '..', 'inner')),
      locationIdentity(directory),
    ]);
    expect(viaLink).toEqual(viaRelative);
    expect(viaLink).toEqual(viaDots);
    expect(viaLink.realPath).toMatch(/inner$/);
    expect(typeof viaLink.ino).toBe('bigint');
    expect(viaLink.key).toBe(`${viaLink.dev}:${viaLink.ino}`);
    expect(viaLink.label).toBe(`${viaLink.realPath} (device ${viaLink.dev}, inode ${viaLink.ino})`);
    expect(other.key).not.toBe(viaLink.key);
  });

  it('rejects a missing directory with NotFound', async () => {
    await expect(locationIdentity(join(directory, 'missing'), 'store-file')).rejects.toMatchObject({ reason: 'NotFound', message: expect.stringMatching(/^\[sluice\/store-file\] cannot resolve/) });
  });
});
