import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';

/**
 * Invariant: two file-storage writers started at the same moment on one partition never both
 * open it: exactly one wins, the other gets StorageError reason Locked.
 */

let bundleDirectory: string;
let childScript: string;
let directory: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  // Inside the workspace: the writer lock loads its native addon from node_modules at run time.
  const cache = fileURLToPath(new URL('../../../node_modules/.cache/', import.meta.url));
  await mkdir(cache, { recursive: true });
  bundleDirectory = await mkdtemp(join(cache, 'sluice-file-race-'));
  childScript = join(bundleDirectory, 'child.mjs');
  // Prints "ready", waits for a line on stdin, opens the storage as its writer and prints "won"
  // (then holds it until stdin ends) or "lost <reason> <message>".
  await build({
    stdin: {
      contents: `
        import { createInterface } from 'node:readline';
        import { createFileStorage } from './src/index.ts';
        const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
        process.stdout.write('ready\\n');
        await lines.next();
        const storage = createFileStorage({ directory: process.argv[2], segmentBytes: 64 * 1024 });
        try {
          await storage.open();
          process.stdout.write('won\\n');
          while (!(await lines.next()).done);
          await storage.close();
        } catch (e) {
          process.stdout.write('lost ' + (e.reason ?? 'error') + ' ' + e.message + '\\n');
        }
        process.exit(0);`,
      resolveDir: fileURLToPath(new URL('..', import.meta.url)),
      loader: 'ts',
    },
    outfile: childScript,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['@sluice/source'],
    logLevel: 'silent',
  });
});

afterAll(async () => {
  await rm(bundleDirectory, { recursive: true, force: true });
});

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'sluice-file-race-'));
});

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await rm(directory, { recursive: true, force: true });
});

/** Starts a racer; `line()` resolves with each line it prints, in order. */
function startRacer(): { child: ChildProcess; line: () => Promise<string>; exited: Promise<void> } {
  const child = spawn(process.execPath, [childScript, directory], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  let buffered = '';
  child.stdout?.on('data', (d: Buffer) => {
    const parts = (buffered + d.toString()).split('\n');
    buffered = parts.pop() ?? '';
    lines.push(...parts);
    wake?.();
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  void exited.then(() => wake?.());
  const line = async (): Promise<string> => {
    while (lines.length === 0) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error('racer exited without an answer');
      await new Promise<void>((resolve) => (wake = resolve));
    }
    return lines.shift() as string;
  };
  return { child, line, exited };
}

// 60 process starts (~0.3 s each on a loaded machine): more than the default 30 s.
it('never lets two writers started at one moment both open the partition (30 rounds)', { timeout: 180_000 }, async () => {
  for (let round = 0; round < 30; round++) {
    const racers = [startRacer(), startRacer()];
    expect(await Promise.all(racers.map((r) => r.line()))).toEqual(['ready', 'ready']);
    for (const r of racers) r.child.stdin?.write('go\n');
    const outcomes = await Promise.all(racers.map((r) => r.line()));
    expect(outcomes.filter((o) => o === 'won'), `round ${round}: ${outcomes.join(' | ')}`).toHaveLength(1);
    expect(outcomes.find((o) => o !== 'won')).toMatch(/^lost Locked \[sluice\/store-file\] .* is open by another writer .*openFileReader\(\)/);
    for (const r of racers) r.child.stdin?.end();
    await Promise.all(racers.map((r) => r.exited));
  }
});
