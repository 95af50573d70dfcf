import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPartition } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bundleChild, type BundledChild } from '@sluice/store-file/testing';
import { createHandlerHost } from './index.js';
import { account } from './test-domain.fixture.js';

let child: BundledChild;
let data: string;
beforeAll(async () => {
  child = await bundleChild(new URL('./crash-child.fixture.ts', import.meta.url), 'handlers-crash');
  data = await mkdtemp(join(tmpdir(), 'sluice-handlers-crash-'));
});
afterAll(async () => {
  await child.dispose();
  await rm(data, { recursive: true, force: true });
});

function run(args: string[]): Promise<{ stdout: string; signal: NodeJS.Signals | null; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child.script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ stdout, stderr, code, signal }));
  });
}

/**
 * Invariant: a process killed (SIGKILL) after its commit is durable and before it
 * acknowledged the command ends, after redelivery, with exactly one effect: the redelivered
 * command is recognized by its id and gets the original outcome.
 */
it('a crash between commit and acknowledgement, then redelivery, has exactly one effect', async () => {
  const crashed = await run([data, 'dep-crash']);
  expect(crashed.signal, crashed.stderr).toBe('SIGKILL');
  expect(crashed.stdout).toContain('committed dep-crash');
  expect(crashed.stdout).not.toContain('ack dep-crash');

  // The "queue" still holds dep-crash (never acked): a restarted process redelivers everything unacked.
  const again = await run([data, 'none']);
  expect(again.code, again.stderr).toBe(0);
  expect(again.stdout).toMatch(/committed open-a \d+ true/);
  expect(again.stdout).toMatch(/committed dep-crash \d+ true/);

  const partition = await openPartition({ storage: createFileStorage({ directory: data, fsync: 'commit' }), name: 'crash' });
  try {
    expect(partition.streamVersion('account-a')).toBe(2);
    const host = createHandlerHost({ partition, entities: [account] });
    const outcome = await host.execute({ id: 'w-all', commands: [{ recipient: 'account-a', command: { type: 'Withdraw', amount: 8 } }] });
    expect(outcome.reason).toBe('insufficient funds: balance 7, asked 8');
  } finally {
    await partition.close();
  }
});
