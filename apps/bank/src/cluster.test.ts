import { execFile, spawn } from 'node:child_process';
import { watch } from 'node:fs';
import { mkdtemp, readdir, readlink, realpath, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

/**
 * `npm start -- --cluster` end to end, from the built bank (`tsc -b`, as `npm start` does):
 * a sluice broker and one sluice node per partition run as child processes, every command
 * and every event goes through the broker. Invariants: money conserved, every transfer
 * exactly once, a second run continues, and no process of the cluster outlives the bank —
 * neither after a normal run nor after SIGINT.
 */

const root = fileURLToPath(new URL('../../../', import.meta.url));
const main = join(root, 'apps/bank/dist/main.js');
const run = promisify(execFile);

let data: string;
beforeAll(async () => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await run(process.execPath, [tsc, '-b', join(root, 'apps/bank/tsconfig.lib.json')], { cwd: root });
}, 600_000);
beforeEach(async () => {
  data = await realpath(await mkdtemp(join(tmpdir(), 'sluice-bank-cluster-')));
});
afterEach(async () => {
  await rm(data, { recursive: true, force: true });
});

/** Every process (of this user) whose working directory is `folder`: the bank starts its children there. */
async function processesIn(folder: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => undefined);
    if (cwd === folder) found.push(Number(entry));
  }
  return found;
}

interface Finished {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function bank(args: readonly string[], onLine?: (line: string, child: ReturnType<typeof spawn>) => void, onSpawn?: (child: ReturnType<typeof spawn>) => void): Promise<Finished> {
  // The bank itself runs elsewhere: only the cluster's processes work in the data folder.
  const child = spawn(process.execPath, [main, '--cluster', '--data', data, '--partitions', '2', '--accounts', '40', '--transfers', '150', '--fsync', 'none', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  onSpawn?.(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (onLine !== undefined) for (const line of chunk.split('\n')) if (line.length > 0) onLine(line, child);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

function pidsIn(stdout: string): number[] {
  const match = /\(pids ([\d, ]+);/.exec(stdout);
  expect(match, stdout).not.toBeNull();
  return match![1].split(', ').map(Number);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm start -- --cluster', () => {
  it('runs the bank through a broker and nodes it starts, twice on the same data, and leaves no process behind', async () => {
    const first = await bank([]);
    expect(first.code, `${first.stdout}\n${first.stderr}`).toBe(0);
    expect(first.stdout).toMatch(/sluice broker on tcp:\/\/127\.0\.0\.1:\d+, 2 sluice node\(s\)/);
    expect(first.stdout).toMatch(/run #1, 2 partitions \(through the broker\)/);
    expect(first.stdout).toMatch(/150 transfers in [\d.]+ s: [\d,]+ transfers\/s end to end, [\d,]+ commands\/s/);
    expect(first.stdout).toMatch(/40 accounts hold 40,000: money conserved; 150 transfers over all runs, each completed exactly once/);
    expect(first.stdout).toContain('cluster stopped');
    const pids = pidsIn(first.stdout);
    expect(pids).toHaveLength(3);
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    expect(await processesIn(data)).toEqual([]);

    const second = await bank([]);
    expect(second.code, `${second.stdout}\n${second.stderr}`).toBe(0);
    expect(second.stdout).toMatch(/run #2/);
    expect(second.stdout).toMatch(/continued from \d+ account events \(150 transfers settled in earlier runs\)/);
    expect(second.stdout).toMatch(/money conserved; 300 transfers over all runs, each completed exactly once/);
    expect(await processesIn(data)).toEqual([]);
  }, 600_000);

  it('stops its broker and nodes on SIGINT, waiting for them to exit', async () => {
    let pids: number[] = [];
    const finished = await bank(['--transfers', '100000'], (line, child) => {
      if (line.includes('(pids ')) pids = pidsIn(line);
      // The run has started: interrupt it mid-way.
      if (line.startsWith('bank: run #')) child.kill('SIGINT');
    });
    expect(finished.code, `${finished.stdout}\n${finished.stderr}`).toBe(130);
    expect(finished.stderr).toContain('SIGINT, stopping the cluster');
    expect(pids).toHaveLength(3);
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    expect(await processesIn(data)).toEqual([]);
  }, 600_000);

  it('stops what it already started when interrupted while the cluster starts', async () => {
    const finished = await bank([], undefined, (child) => {
      // The broker serves and the config is written: the nodes are being started right now.
      const watcher = watch(data, (_event, file) => {
        if (file !== 'sluice.json') return;
        watcher.close();
        child.kill('SIGINT');
      });
    });
    expect(finished.code, `${finished.stdout}\n${finished.stderr}`).toBe(130);
    expect(finished.stderr).toContain('SIGINT, stopping the cluster');
    expect(finished.stdout).not.toContain('run #');
    expect(await processesIn(data)).toEqual([]);
  }, 600_000);

  it('fails at once, naming it, when its broker goes away mid-run, and stops the nodes', async () => {
    let pids: number[] = [];
    const finished = await bank(['--transfers', '100000'], (line) => {
      if (line.includes('(pids ')) pids = pidsIn(line);
      // The run has started: the broker is stopped behind the bank's back.
      if (line.startsWith('bank: run #')) process.kill(pids[0], 'SIGTERM');
    });
    expect(finished.code, `${finished.stdout}\n${finished.stderr}`).toBe(1);
    expect(finished.stderr).toMatch(/sluice broker \(pid \d+\) exited while the bank ran/);
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    expect(await processesIn(data)).toEqual([]);
  }, 600_000);
});
