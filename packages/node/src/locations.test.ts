import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSluiceConfig, type SluiceConfig } from '@sluice/config';
import { openPartition, type PartitionStorage } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { afterEach, describe, expect, it } from 'vitest';
import { UnregisteredLocationError, createPartitionStorage, locationFactory, resolveLocationFactories } from './locations.js';
import { startNode } from './node.js';

const directories: string[] = [];
afterEach(async () => {
  for (const directory of directories.splice(0)) await rm(directory, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'sluice-locations-'));
  directories.push(directory);
  return directory;
}

function configWith(location: unknown, baseDir: string, level: Record<string, unknown> = {}): SluiceConfig {
  return parseSluiceConfig(
    {
      brokers: ['tcp://127.0.0.1:1'],
      levels: { main: { locations: [location], fsync: 'commit', ...level } },
      partitions: { 'ledger-1': 'main' },
      routing: { hash: ['ledger-1'] },
    },
    baseDir,
  );
}

async function appendOne(storage: PartitionStorage): Promise<number> {
  const partition = await openPartition({ storage, name: 'ledger-1' });
  try {
    return (await partition.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array([1]) }] })).lastSeq;
  } finally {
    await partition.close();
  }
}

describe('location factories (backends injected by the application)', () => {
  it('opens a "file" location with the factory the application registered', async () => {
    const config = configWith({ file: './data/{partition}' }, await tempDir());
    const locations = await resolveLocationFactories(Object.values(config.partitions), { file: locationFactory('file', createFileStorage) });
    const storage = createPartitionStorage(config.partitions['ledger-1'], locations);
    expect(storage.kind).toBe('file');
    expect(await appendOne(storage)).toBe(1);
  });

  it('imports @sluice/store-lmdb for an "lmdb" location when the application registered none (optional peer dependency)', async () => {
    const config = configWith({ lmdb: './lmdb/{partition}' }, await tempDir());
    const locations = await resolveLocationFactories(Object.values(config.partitions));
    const storage = createPartitionStorage(config.partitions['ledger-1'], locations);
    expect(storage.kind).toBe('lmdb');
    expect(await appendOne(storage)).toBe(1);
  });

  it('passes a custom kind\'s options, {partition} substituted, to the registered factory', async () => {
    const config = configWith({ 'my-kv': { url: 'kv://{partition}' } }, '/etc/sluice');
    const seen: unknown[] = [];
    const locations = await resolveLocationFactories(Object.values(config.partitions), {
      'my-kv': (location, context) => {
        seen.push({ location, context });
        return {} as PartitionStorage;
      },
    });
    createPartitionStorage(config.partitions['ledger-1'], locations);
    expect(seen).toEqual([{ location: { kind: 'my-kv', options: { url: 'kv://ledger-1' } }, context: { partition: 'ledger-1', fsync: { kind: 'commit' }, fsyncExplicit: true } }]);
  });

  it('refuses a backend nobody registered, saying what to do', async () => {
    const custom = configWith({ tape: { device: '/dev/st0' } }, '/etc/sluice');
    await expect(resolveLocationFactories(Object.values(custom.partitions), { file: locationFactory('file', createFileStorage) })).rejects.toThrow(
      'partition(s) "ledger-1" use "tape" locations, but no factory is registered for "tape" (registered: memory, file): pass a factory for it in startNode({ locations: { "tape": ... } })',
    );
    const missing = Object.assign(new Error("Cannot find package '@sluice/store-azure'"), { code: 'ERR_MODULE_NOT_FOUND' });
    const azure = configWith({ azure: { container: 'c' } }, '/etc/sluice');
    const error = await resolveLocationFactories(Object.values(azure.partitions), {}, () => Promise.reject(missing)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UnregisteredLocationError);
    expect((error as Error).message).toContain('@sluice/store-azure is not installed: install @sluice/store-azure next to @sluice/node');
    // startNode refuses before opening anything or touching a broker.
    await expect(startNode({ config: custom })).rejects.toThrow(UnregisteredLocationError);
  });

  it('refuses to start a partition whose level ships to targets (no shipper in the node yet)', async () => {
    const config = configWith({ memory: {} }, '/etc/sluice', { ship: [{ azure: { container: 'archive' } }] });
    await expect(startNode({ config, nodeName: 'n1' })).rejects.toThrow(/ships to targets, which @sluice\/node does not do yet: remove "ship"/);
  });
});

describe('a node stopped while its partitions open (issue 13)', () => {
  it('stops preallocating at once, leaves no partial segment, and rejects naming the interruption', async () => {
    const base = await tempDir();
    // The largest segment allowed: zero-filling it takes seconds, the stop must not wait for it.
    const config = configWith({ file: { directory: './data/{partition}', segmentBytes: 1024 * 1024 * 1024 } }, base);
    const controller = new AbortController();
    const started = performance.now();
    const starting = startNode({ config, locations: { file: locationFactory('file', createFileStorage) }, signal: controller.signal });
    setImmediate(() => controller.abort(new Error('SIGTERM')));
    const error = await starting.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ name: 'NodeStartError' });
    expect((error as Error).message).toMatch(/interrupted|aborted|closed/i);
    expect(performance.now() - started).toBeLessThan(5_000);
    const left = await readdir(join(base, 'data', 'ledger-1')).catch(() => []);
    expect(left.filter((name) => name.endsWith('.seg'))).toEqual([]);
  });
});
