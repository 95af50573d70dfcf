import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.js';
import { startSluice, tempFolder } from './testing/cli-harness.js';

/**
 * Issue 13 item 1: `sluice node` ignored SIGTERM until every partition had opened (and a huge
 * segment was being zero-filled). The stop signal (the harness's stop(), which SIGINT/SIGTERM
 * trigger in the real process) must end it at once, leaving no half-made segment behind.
 */
describe('sluice node stopped while its partitions open', () => {
  it('exits promptly and leaves no partial segment', { timeout: 60_000 }, async () => {
    const folder = await tempFolder();
    const config = join(folder, 'sluice.json');
    await writeFile(
      config,
      JSON.stringify({
        brokers: ['tcp://127.0.0.1:1'],
        // The largest segment allowed: zero-filling it takes seconds; the stop must not wait.
        levels: { big: { locations: [{ file: { directory: './data/{partition}', segmentBytes: 1024 * 1024 * 1024 } }], fsync: 'commit' } },
        partitions: { p1: 'big' },
        routing: { hash: ['p1'] },
      }),
    );
    const node = startSluice(['node', '--config', config], { cwd: folder });
    const started = performance.now();
    const code = await node.stop();
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(code).not.toBe(ExitCode.Ok);
    expect(node.stderr.text).toMatch(/interrupted|closed|aborted/i);
    const left = await readdir(join(folder, 'data', 'p1')).catch(() => []);
    expect(left.filter((name) => name.endsWith('.seg'))).toEqual([]);
  });
});
