import { mkdir, open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createMirroredStorage, openPartition, type PartitionStorage } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { createLmdbStorage } from '@sluice/store-lmdb';
import { describe, expect, it, vi } from 'vitest';
import { ExitCode } from './exit-codes.js';
import { jsonLines, sluice, startSluice, tempFolder } from './testing/cli-harness.js';

/**
 * `sluice levels`, `sluice scrub` and `sluice reindex` on real folders. Invariant: a damaged
 * copy is never reported as good; scrub exits 6 unless every damaged copy was repaired.
 */

const SEGMENT_BYTES = 64 * 1024;

async function writeEvents(storage: PartitionStorage, count: number): Promise<void> {
  const partition = await openPartition({ storage, name: 'p1' });
  for (let i = 0; i < count; i += 1) {
    await partition.append({ streamId: `s-${i % 3}`, events: [{ type: 'E', data: new TextEncoder().encode(`v${i}`.padEnd(3000, '.')) }] });
  }
  await partition.close();
}

/** Flips one bit deep inside the first segment of a file partition (bit rot). */
async function flipByte(directory: string): Promise<void> {
  const [first] = (await readdir(directory)).filter((name) => name.endsWith('.seg')).sort();
  const handle = await open(join(directory, first), 'r+');
  const at = 10_000;
  const byte = Buffer.alloc(1);
  await handle.read(byte, 0, 1, at);
  byte[0] ^= 0x20;
  await handle.write(byte, 0, 1, at);
  await handle.close();
}

describe('sluice levels', () => {
  it('prints the effective level of each partition of examples/levels/sluice.json, as text and --json', async () => {
    const config = new URL('../../../examples/levels/sluice.json', import.meta.url).pathname;
    const text = await sluice(['levels', '--config', config]);
    expect(text.code).toBe(ExitCode.Ok);
    const folder = config.replace(/\/sluice\.json$/, '');
    expect(text.stdout).toContain(
      [
        'payments: level "critical", fsync commit, ack local',
        `  location (mirror): file ${folder}/disk1/payments`,
        `  location (mirror): lmdb ${folder}/disk2/payments`,
        `  ship: file ${folder}/west/payments`,
        `  ship: lmdb ${folder}/north/payments`,
        '  alert: lag over 1000 ms',
      ].join('\n'),
    );
    expect(text.stdout).toContain('ledger: level "regulated", fsync commit, ack quorum 2 of 3 targets');
    expect(text.stdout).toContain(`catalog: level "standard", fsync commit, ack local\n  location: file ${folder}/data/catalog\n  ship: file ${folder}/archive/catalog\n  alert: lag over 10000 ms (default)`);
    expect(text.stdout).toContain('analytics: level "commodity", fsync interval:100ms, ack local');
    const json = jsonLines((await sluice(['levels', '--config', config, '--json'])).stdout);
    expect(json.map((line) => line.partition)).toEqual(['payments', 'ledger', 'catalog', 'analytics', 'sessions']);
    expect(json[1]).toMatchObject({ level: 'regulated', ack: { quorum: 2 }, alertLagMs: 1000, alertLagMsDefault: false });
    expect(json[4]).toMatchObject({ locations: [{ kind: 'memory' }], ship: [], alertLagMs: null, fsync: 'none', ack: 'local' });
  });

  it('hides credentials in target options', async () => {
    const folder = await tempFolder();
    await writeFile(
      join(folder, 'sluice.json'),
      JSON.stringify({
        brokers: ['tcp://127.0.0.1:5555'],
        levels: { s: { locations: [{ memory: {} }], ship: [{ azure: { connectionString: 'AccountKey=c2VjcmV0', container: 'archive' } }] } },
        partitions: { p1: 's' },
        routing: { hash: ['p1'] },
      }),
    );
    const result = await sluice(['levels', '--config', 'sluice.json'], { cwd: folder });
    expect(result.stdout).toContain('ship: azure {"connectionString":"(hidden)","container":"archive","prefix":"p1"}');
    expect(result.stdout).not.toContain('c2VjcmV0');
  });

  it('reports every problem in the config with its path (exit 1)', async () => {
    const folder = await tempFolder();
    await writeFile(join(folder, 'blocked'), 'a file');
    await writeFile(
      join(folder, 'sluice.json'),
      JSON.stringify({
        brokers: ['tcp://127.0.0.1:5555'],
        levels: { a: { locations: [], tier: 1 }, b: { locations: [{ file: './blocked/{partition}' }] } },
        partitions: { p1: 'a', p2: 'b' },
        routing: { hash: ['p1', 'p2'] },
      }),
    );
    const result = await sluice(['levels', '--config', 'sluice.json'], { cwd: folder });
    expect(result.code).toBe(ExitCode.Usage);
    expect(result.stderr).toContain('levels.a.tier: unknown key');
    expect(result.stderr).toContain('levels.a.locations: give at least one location');
  });
});

describe('sluice scrub', () => {
  it('verifies a good folder (exit 0) and finds a flipped byte in it (exit 6, DAMAGED)', async () => {
    const directory = join(await tempFolder(), 'p1');
    await writeEvents(createFileStorage({ directory, segmentBytes: SEGMENT_BYTES }), 40);
    const good = await sluice(['scrub', '--path', directory]);
    expect(good.code).toBe(ExitCode.Ok);
    expect(good.stdout).toMatch(/: ok \(head .*\)\n {2}file: 40 batches, \d+ bytes verified; ok/);
    await flipByte(directory);
    const bad = await sluice(['scrub', '--path', directory, '--json']);
    expect(bad.code).toBe(ExitCode.DataError);
    const [report] = jsonLines(bad.stdout);
    // Reported as damage, never as a good copy (open trusts the sealed segment's sidecar; the scrub reads every batch).
    expect(report).toMatchObject({ ok: false, lastSeq: 40, copies: [{ location: 'file', damage: { seq: 1, detail: expect.stringMatching(/bad-checksum/) }, repaired: false }] });
    expect(bad.stderr).toContain('a copy is damaged and was not repaired');
  });

  it('with --config, repairs a damaged file copy of a mirrored level from the LMDB copy (exit 0); --no-repair only reports (exit 6)', async () => {
    const folder = await tempFolder();
    const disk1 = join(folder, 'disk1', 'p1');
    const disk2 = join(folder, 'disk2', 'p1');
    await mkdir(disk1, { recursive: true });
    await mkdir(disk2, { recursive: true });
    await writeFile(
      join(folder, 'sluice.json'),
      JSON.stringify({
        brokers: ['tcp://127.0.0.1:5555'],
        levels: { critical: { locations: [{ file: { directory: './disk1/{partition}', segmentBytes: SEGMENT_BYTES } }, { lmdb: './disk2/{partition}' }] } },
        partitions: { p1: 'critical' },
        routing: { hash: ['p1'] },
      }),
    );
    await writeEvents(
      createMirroredStorage({ locations: [createFileStorage({ directory: disk1, segmentBytes: SEGMENT_BYTES }), createLmdbStorage({ directory: disk2 })] }),
      40,
    );
    await flipByte(disk1);
    const checked = await sluice(['scrub', '--config', 'sluice.json', '--no-repair'], { cwd: folder });
    const repaired = await sluice(['scrub', '--config', 'sluice.json', '--partition', 'p1'], { cwd: folder });
    const again = await sluice(['scrub', '--config', 'sluice.json', '--json'], { cwd: folder });
    expect({ checked: checked.code, repaired: repaired.code, again: again.code }).toEqual({ checked: ExitCode.DataError, repaired: ExitCode.Ok, again: ExitCode.Ok });
    // The damage is in a sealed segment that open loads from its sidecar without reading it
    // (store-file's fast open): the scrub's read of every batch finds it.
    expect(checked.stdout).toMatch(/^p1: DAMAGED \(head .*\)\n {2}file .*disk1\/p1: 0 batches, 0 bytes verified; damaged at seq 1: .*bad-checksum.*\(not repaired\)\n {2}lmdb .*: 40 batches, \d+ bytes verified; ok/);
    expect(checked.stderr).toContain('p1: a copy is damaged and was not repaired (run again without --no-repair to repair mirrored copies)');
    expect(repaired.stdout).toMatch(/^p1: ok \(head .*\)\n {2}file .*disk1\/p1: 40 batches, \d+ bytes verified; damaged at seq 1: .*bad-checksum.*\(repaired\)/);
    expect(jsonLines(again.stdout)[0]).toMatchObject({ partition: 'p1', ok: true, copies: [{ damage: null }, { damage: null }] });
  });

  it('needs exactly one of --path and --config (exit 1), and a folder holding a log (exit 2)', async () => {
    expect((await sluice(['scrub'])).code).toBe(ExitCode.Usage);
    expect((await sluice(['scrub', '--path', join(await tempFolder(), 'none')])).code).toBe(ExitCode.NotFound);
  });
});

describe('sluice reindex', () => {
  it('rebuilds the index of a folder written by the test (exit 0), and refuses a damaged log', async () => {
    const directory = join(await tempFolder(), 'p1');
    await writeEvents(createFileStorage({ directory, segmentBytes: SEGMENT_BYTES }), 30);
    const result = await sluice(['reindex', '--path', directory, '--index', join(directory, 'index'), '--json']);
    expect(result.code).toBe(ExitCode.Ok);
    expect(jsonLines(result.stdout)[0]).toMatchObject({ lastSeq: 30, streamCount: 3 });
    expect((await readdir(join(directory, 'index'))).length).toBeGreaterThan(0);
    const text = await sluice(['reindex', '--path', directory, '--index', join(directory, 'index')]);
    expect(text.stdout).toMatch(/indexed seq 1\.\.30 \(3 streams\)/);
    await flipByte(directory);
    const damaged = await sluice(['reindex', '--path', directory, '--index', join(directory, 'index')]);
    expect(damaged.code).toBe(ExitCode.DataError);
  });
});

describe('sluice node on a shipping level', () => {
  it('logs the shipper\'s alerts as shipping-alert events on stderr (a target that cannot be reached)', async () => {
    const folder = await tempFolder();
    await writeFile(
      join(folder, 'sluice.json'),
      JSON.stringify({
        brokers: ['tcp://127.0.0.1:1'],
        levels: {
          standard: {
            locations: [{ file: './data/{partition}' }],
            ship: [{ file: './archive/{partition}' }, { azure: { connectionString: 'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1', container: 'archive', attemptsMax: 1 } }],
            alertLagMs: 1000,
          },
        },
        partitions: { p1: 'standard' },
        routing: { hash: ['p1'] },
      }),
    );
    const node = startSluice(['node', '--config', 'sluice.json', '--node', 'n1'], { cwd: folder });
    await vi.waitFor(() => expect(node.stderr.text).toContain('"event":"shipping-alert"'), { timeout: 20_000, interval: 100 });
    const alert = jsonLines(node.stderr.text).find((line) => line.event === 'shipping-alert');
    expect(alert).toMatchObject({ partition: 'p1', kind: 'target-down', target: 'ship[1] azure #1' });
    expect(node.stderr.text).not.toContain('c2VjcmV0');
    expect(await node.stop()).toBe(ExitCode.Ok);
  });
});
