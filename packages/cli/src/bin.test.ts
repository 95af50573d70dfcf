import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { MajordomoClient } from '@sluice/majordomo';
import { build } from 'esbuild';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.js';
import { jsonLines, tempFolder } from './testing/cli-harness.js';

/**
 * The real `sluice` executable in child processes: signals, exit codes, stdin and stdout
 * through real pipes. The entry is bundled once (like store-file's crash test), so each run is
 * a plain `node` start. The bundle sits under node_modules/.cache, from where the zeromq
 * native package (left out of the bundle) resolves.
 */
const repositoryRoot = fileURLToPath(new URL('../../../', import.meta.url));
let bundleFolder: string;
let sluiceBin: string;
const children: ChildProcessWithoutNullStreams[] = [];

beforeAll(async () => {
  await mkdir(join(repositoryRoot, 'node_modules', '.cache'), { recursive: true });
  bundleFolder = await mkdtemp(join(repositoryRoot, 'node_modules', '.cache', 'sluice-cli-test-'));
  sluiceBin = join(bundleFolder, 'sluice.mjs');
  await build({
    entryPoints: [fileURLToPath(new URL('./bin.ts', import.meta.url))],
    outfile: sluiceBin,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['@sluice/source'],
    external: ['zeromq'],
    // CommonJS dependencies bundled into ESM still call require() for Node built-ins.
    banner: { js: "import { createRequire as __sluiceRequire } from 'node:module'; const require = __sluiceRequire(import.meta.url);" },
    logLevel: 'silent',
  });
});

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

afterAll(async () => {
  await rm(bundleFolder, { recursive: true, force: true });
});

interface Finished {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function spawnSluice(args: readonly string[], cwd?: string): ChildProcessWithoutNullStreams {
  const child = spawn(process.execPath, [sluiceBin, ...args], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  return child;
}

function finished(child: ChildProcessWithoutNullStreams): Promise<Finished> {
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function runSluice(args: readonly string[], stdin?: string): Promise<Finished> {
  const child = spawnSluice(args);
  const done = finished(child);
  child.stdin.end(stdin ?? '');
  return done;
}

function firstLine(child: ChildProcessWithoutNullStreams): Promise<string> {
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    lines.once('line', (line) => {
      lines.close();
      resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`sluice exited with ${code} before printing a line`)));
  });
}

describe('the sluice executable', () => {
  it('runs a broker on a free port, prints the endpoint first and exits 0 on SIGTERM', async () => {
    const child = spawnSluice(['broker', '--endpoint', 'tcp://127.0.0.1:0']);
    const endpoint = await firstLine(child);
    expect(endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    const client = new MajordomoClient({ endpoints: [endpoint], timeoutMs: 2000, attemptsMax: 1 });
    try {
      expect(await client.hasService('sluice.partition.p1')).toBe(false); // MMI answered: it is live
    } finally {
      await client.close();
    }
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
    child.kill('SIGTERM');
    expect(await exit).toBe(ExitCode.Ok);
    expect(stderr).toContain('sluice broker: stopped');
  });

  it('appends from a stdin pipe, reads back JSON lines and exits 3 on a conflict', async () => {
    const path = join(await tempFolder(), 'p1');
    const appended = await runSluice(
      ['append', '--path', path, '--json'],
      '{"stream":"s-1","type":"Opened","data":{"n":1},"expectedVersion":0}\n{"stream":"s-1","type":"Noted","data":"hi"}\n',
    );
    expect(appended).toMatchObject({ code: ExitCode.Ok, stderr: '' });
    expect(jsonLines(appended.stdout).map((line) => line.lastSeq)).toEqual([1, 2]);

    const read = await runSluice(['read', '--path', path, '--json']);
    expect(read.code).toBe(ExitCode.Ok);
    expect(jsonLines(read.stdout)).toMatchObject([
      { seq: 1, stream: 's-1', type: 'Opened', data: { n: 1 } },
      { seq: 2, stream: 's-1', type: 'Noted', text: 'hi' },
    ]);

    const conflict = await runSluice(['append', '--path', path, '--stream', 's-1', '--type', 'T', '--data', '1', '--expected-version', '0']);
    expect(conflict.code).toBe(ExitCode.Conflict);
    expect(conflict.stderr).toContain('is at version 2');
    expect((await runSluice(['read'])).code).toBe(ExitCode.Usage);
  });

  it('exits 0 quietly when the reader of its stdout goes away (sluice read | head)', async () => {
    const path = join(await tempFolder(), 'p1');
    const lines = Array.from({ length: 5000 }, (_, n) => `{"stream":"s","type":"T","data":${n}}`).join('\n');
    expect((await runSluice(['append', '--path', path, '--fsync', 'none'], lines)).code).toBe(ExitCode.Ok);
    const child = spawnSluice(['read', '--path', path]);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(await firstLine(child)).toBe('#1 s@1 T 0');
    child.stdout.destroy(); // like `head -1` exiting
    expect(await exit).toBe(ExitCode.Ok);
    expect(stderr).toBe('');
  });

  it('stops a tail on SIGINT with exit 0', async () => {
    const path = join(await tempFolder(), 'p1');
    await runSluice(['append', '--path', path, '--stream', 's', '--type', 'T', '--data', '1']);
    const child = spawnSluice(['tail', '--path', path, '--from-seq', '1']);
    expect(await firstLine(child)).toBe('#1 s@1 T 1');
    const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
    child.kill('SIGINT');
    expect(await exit).toBe(ExitCode.Ok);
  });
});
