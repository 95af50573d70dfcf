import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, expect, it } from 'vitest';

let bundle: string;
let script: string;
let data: string;
beforeAll(async () => {
  const cache = fileURLToPath(new URL('../../../node_modules/.cache/', import.meta.url));
  await mkdir(cache, { recursive: true });
  bundle = await mkdtemp(join(cache, 'sluice-bank-child-'));
  script = join(bundle, 'main.mjs');
  await build({
    entryPoints: [fileURLToPath(new URL('./main.ts', import.meta.url))],
    outfile: script,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['@sluice/source'],
    logLevel: 'silent',
    banner: { js: "import { createRequire as bannerRequire } from 'node:module'; const require = bannerRequire(import.meta.url);" },
  });
  data = await mkdtemp(join(tmpdir(), 'sluice-bank-crash-'));
});
afterAll(async () => {
  await rm(bundle, { recursive: true, force: true });
  await rm(data, { recursive: true, force: true });
});

function run(args: string[], killAfterMs?: number): Promise<{ stdout: string; stderr: string; code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, '--data', data, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      // Kill once the run has started sending transfers.
      if (killAfterMs !== undefined && stdout.includes('bank: run #')) setTimeout(() => child.kill('SIGKILL'), killAfterMs).unref();
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ stdout, stderr, code, signal }));
  });
}

/**
 * Invariant: after the bank process is killed (SIGKILL) in the middle of transfers, the next
 * run finishes every transfer that had started (sagas resume from their checkpoints), money
 * is conserved, and no transfer completes twice.
 */
it('the bank killed with SIGKILL mid-run continues on the next run: money conserved, each transfer exactly once', async () => {
  const killed = await run(['--accounts', '200', '--transfers', '50000', '--concurrency', '500'], 400);
  expect(killed.signal, killed.stderr).toBe('SIGKILL');
  expect(killed.stdout).not.toMatch(/transfers in/); // it really died mid-run
  const next = await run(['--accounts', '200', '--transfers', '500']);
  expect(next.code, next.stdout + next.stderr).toBe(0);
  expect(next.stdout).toMatch(/run #2/);
  expect(next.stdout).toMatch(/money conserved/);
  expect(next.stdout).toMatch(/each completed exactly once/);
}, 120_000);
