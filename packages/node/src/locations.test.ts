import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSluiceConfig, type SluiceConfig } from '@sluice/config';
import { openPartition, type PartitionStorage } from '@sluice/store';
import { createFileStorage } from '@sluice/store-file';
import { afterEach, describe, expect, it, vi } from 'vitest';
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

});

describe('reliability levels (issue 11): mirrors, shipping, quorum acknowledgement', () => {
  const events = (streamId: string) => ({ streamId, events: [{ type: 'E', data: new Uint8Array([1, 2, 3]) }] });
  async function headOf(storage: PartitionStorage): Promise<number> {
    await storage.open();
    try {
      return (await storage.head()).lastSeq;
    } finally {
      await storage.close();
    }
  }

  it('opens a level of file + lmdb + memory locations as one mirror: every acknowledged commit is in both disk copies', async () => {
    const base = await tempDir();
    const config = configWith({ file: './disk1/{partition}' }, base, { locations: [{ file: './disk1/{partition}' }, { lmdb: './disk2/{partition}' }, { memory: {} }] });
    const node = await startNode({ config, nodeName: 'n1', locations: { file: locationFactory('file', createFileStorage) } });
    let lastSeq = 0;
    try {
      const partition = node.partitions.get('ledger-1');
      for (let i = 0; i < 5; i += 1) lastSeq = (await partition!.append(events(`s-${i}`))).lastSeq;
      expect(node.shippers.size).toBe(0);
    } finally {
      await node.close();
    }
    expect(lastSeq).toBe(5);
    expect(await headOf(createFileStorage({ directory: join(base, 'disk1', 'ledger-1') }))).toBe(5);
    const { createLmdbStorage } = await import('@sluice/store-lmdb');
    expect(await headOf(createLmdbStorage({ directory: join(base, 'disk2', 'ledger-1') }))).toBe(5);
  });

  it('ships to the level\'s targets through the same location factories, and reports target alerts as shipping-alert events', async () => {
    const base = await tempDir();
    const config = configWith({ memory: {} }, base, { ship: [{ file: './backup/{partition}' }, { broken: {} }], alertLagMs: 50 });
    const broken = (): PartitionStorage => ({ kind: 'broken', open: () => Promise.reject(new Error('target unreachable')), close: () => Promise.resolve() }) as unknown as PartitionStorage;
    const node = await startNode({ config, nodeName: 'n1', locations: { file: locationFactory('file', createFileStorage), broken } });
    const alerts: string[] = [];
    node.on('shipping-alert', ({ partition, alert }) => alerts.push(`${partition} ${alert.kind} ${alert.target}`));
    try {
      const partition = node.partitions.get('ledger-1')!;
      for (let i = 0; i < 3; i += 1) await partition.append(events(`s-${i}`));
      const shipper = node.shippers.get('ledger-1')!;
      await shipper.waitFor(3, { quorum: 1, timeoutMs: 10_000 });
      await vi.waitFor(() => expect(alerts).toContain('ledger-1 target-down ship[1] broken #1'), { timeout: 10_000 });
      expect(shipper.status().map((target) => [target.target, target.head.lastSeq])).toEqual([
        [`ship[0] file ${join(base, 'backup', 'ledger-1')}`, 3],
        ['ship[1] broken #1', 0],
      ]);
    } finally {
      await node.close();
    }
    // Stopped with the node; what it shipped opens as a partition's storage.
    expect(await headOf(createFileStorage({ directory: join(base, 'backup', 'ledger-1') }))).toBe(3);
  });

  it('replaces the shipper when a faulted partition reopens: the old one stops, the new one ships what comes after', async () => {
    const base = await tempDir();
    const config = configWith({ file: './data/{partition}' }, base, { ship: [{ file: './backup/{partition}' }] });
    const node = await startNode({ config, nodeName: 'n1', locations: { file: locationFactory('file', createFileStorage) }, reopenDelayMs: 10 });
    try {
      const first = node.partitions.get('ledger-1')!;
      await first.append(events('a'));
      const oldShipper = node.shippers.get('ledger-1')!;
      await oldShipper.waitFor(1, { timeoutMs: 10_000 });
      const reopened = new Promise((resolve) => node.once('partition-reopened', resolve));
      node.onFault(first, new Error('injected fault'));
      await reopened;
      const newShipper = node.shippers.get('ledger-1')!;
      expect(newShipper).not.toBe(oldShipper);
      expect(oldShipper.status().map((target) => target.state)).toEqual(['stopped']);
      await node.partitions.get('ledger-1')!.append(events('b'));
      await newShipper.waitFor(2, { timeoutMs: 10_000 });
    } finally {
      await node.close();
    }
    expect(await headOf(createFileStorage({ directory: join(base, 'backup', 'ledger-1') }))).toBe(2);
  });

  it('with ack { quorum: 2 }, acknowledges a commit only once two targets hold it', async () => {
    const base = await tempDir();
    const config = configWith({ file: './local/{partition}' }, base, {
      ship: [{ file: './west/{partition}' }, { lmdb: './north/{partition}' }],
      ack: { quorum: 2 },
    });
    const node = await startNode({ config, nodeName: 'n1', locations: { file: locationFactory('file', createFileStorage) } });
    let result: Awaited<ReturnType<NonNullable<ReturnType<typeof node.partitions.get>>['append']>>;
    let heads: number[];
    try {
      result = await node.partitions.get('ledger-1')!.append(events('s'));
      // Acknowledged: both targets hold it now, with no waiting.
      heads = node.shippers.get('ledger-1')!.status().map((target) => target.head.lastSeq);
    } finally {
      await node.close();
    }
    expect(result.lastSeq).toBe(1);
    expect(result.reliability?.targets).toHaveLength(2);
    expect(heads).toEqual([1, 1]);
  });
});

describe('a node stopped while its partitions open (issue 13)', () => {
  it('stops preallocating at once, leaves no partial segment, and rejects naming the interruption', async () => {
    const base = await tempDir();
    // The largest segment allowed: zero-filling it takes seconds, the stop must not wait for it.
    const config = configWith({ file: { directory: './data/{partition}', segmentBytes: 1024 * 1024 * 1024, preallocate: 'zero-fill' } }, base);
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

describe('examples/levels/sluice.json (issue 11)', () => {
  it('runs as written: every partition opens on its level, shippers for the shipping levels, quorum-acknowledged appends', async () => {
    const base = await tempDir();
    const text = await readFile(fileURLToPath(new URL('../../../examples/levels/sluice.json', import.meta.url)), 'utf8');
    await writeFile(join(base, 'sluice.json'), text);
    const node = await startNode({ config: join(base, 'sluice.json'), nodeName: 'n1', locations: { file: locationFactory('file', createFileStorage) } });
    try {
      expect([...node.partitions.keys()].sort()).toEqual(['analytics', 'catalog', 'ledger', 'payments', 'sessions']);
      expect([...node.shippers.keys()].sort()).toEqual(['catalog', 'ledger', 'payments']);
      const result = await node.partitions.get('ledger')!.append({ streamId: 'ledger-1', events: [{ type: 'E', data: new Uint8Array([1]) }] });
      expect(result.reliability?.targets).toHaveLength(2);
      await node.partitions.get('payments')!.append({ streamId: 'payment-1', events: [{ type: 'E', data: new Uint8Array([1]) }] });
      await node.shippers.get('payments')!.waitFor(1, { timeoutMs: 10_000 });
    } finally {
      await node.close();
    }
    expect((await readdir(base)).sort()).toEqual(['archive', 'data', 'disk1', 'disk2', 'east', 'north', 'sluice.json', 'west']);
  });
});
