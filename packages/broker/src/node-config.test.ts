import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPartition, type PartitionStorage } from '@sluice/store';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from './config-error.js';
import { loadNodeConfig, parseNodeConfig, partitionsOfNode } from './node-config.js';

const directories: string[] = [];
afterEach(async () => {
  for (const directory of directories.splice(0)) await rm(directory, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'sluice-config-'));
  directories.push(directory);
  return directory;
}

const valid = {
  brokers: ['tcp://127.0.0.1:5555', 'tcp://127.0.0.1:5556'],
  levels: {
    standard: { locations: [{ file: './data/{partition}' }], fsync: 'commit' },
    fast: { locations: [{ file: { directory: '/var/sluice/{partition}', segmentBytes: 1048576 } }], fsync: 'interval:100ms' },
    scratch: { locations: [{ memory: {} }] },
  },
  partitions: { 'bank-1': 'standard', 'bank-2': 'standard', analytics: 'fast', cache: 'scratch' },
  routing: { prefixes: { 'metric-': 'analytics', 'tmp-': 'cache' }, hash: ['bank-1', 'bank-2'] },
  nodes: { 'node-a': { partitions: ['bank-1', 'analytics'] }, 'node-b': { partitions: ['bank-2', 'cache'] } },
};

/** The issues of a config that must fail, as "path: message" lines. */
async function issuesOf(json: unknown, options?: Parameters<typeof parseNodeConfig>[2]): Promise<string[]> {
  const error = await parseNodeConfig(json, '/etc/sluice', options).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ConfigError);
  return (error as ConfigError).issues.map((issue) => `${issue.path}: ${issue.message}`);
}

describe('node config', () => {
  it('resolves a valid config: paths against its folder, {partition}, services, fsync, nodes', async () => {
    const config = await parseNodeConfig(valid, '/etc/sluice');
    expect(config.brokers).toEqual(valid.brokers);
    expect(config.partitions['bank-1']).toMatchObject({
      name: 'bank-1',
      level: 'standard',
      service: 'sluice.partition.bank-1',
      location: { kind: 'file', directory: '/etc/sluice/data/bank-1' },
      fsync: { kind: 'commit' },
    });
    expect(config.partitions.analytics).toMatchObject({
      location: { kind: 'file', directory: '/var/sluice/analytics', segmentBytes: 1048576 },
      fsync: { kind: 'interval', intervalMs: 100 },
    });
    expect(config.partitions.cache.location).toEqual({ kind: 'memory' });
    expect(config.levels.standard.locations[0]).toEqual({ kind: 'file', directory: '/etc/sluice/data/{partition}' });
    expect(config.routing).toEqual({ prefixes: valid.routing.prefixes, hash: ['bank-1', 'bank-2'] });
    expect(partitionsOfNode(config, 'node-a')).toEqual(['bank-1', 'analytics']);
    expect(() => partitionsOfNode(config)).toThrow(/no node name was given: start the node with one of "node-a", "node-b"/);
    expect(() => partitionsOfNode(config, 'node-z')).toThrow(ConfigError);
    const { nodes: _, ...withoutNodes } = valid;
    expect(partitionsOfNode(await parseNodeConfig(withoutNodes, '/etc/sluice'))).toEqual(['bank-1', 'bank-2', 'analytics', 'cache']);
  });

  it('reports every problem at once, each with its path', async () => {
    const issues = await issuesOf({
      brokers: ['http://x', 'tcp://a:1', 'tcp://a:1'],
      levels: {
        good: { locations: [{ file: './d/{partition}' }] },
        bad: { locations: [{ file: 5 }], fsync: 'sometimes', ship: [{ azure: {} }] },
        empty: { locations: [] },
        odd: { locations: [{ tape: '/dev/st0' }] },
      },
      partitions: { 'p 1': 'good', p2: 'missing', p3: 42 },
      routing: { hash: ['p2', 'nope'], prefixes: { 'x-': 'gone' }, extra: true },
      nodes: { n1: { partitions: ['p2', 'p2'] } },
      colour: 'blue',
    });
    expect(issues).toEqual([
      'colour: unknown key: expected one of "brokers", "levels", "partitions", "routing", "nodes"',
      'brokers[0]: must be a ZeroMQ endpoint such as "tcp://127.0.0.1:5555"',
      'brokers: lists the same endpoint twice',
      'levels.bad.ship: asynchronous shipping targets are not supported yet: remove "ship"',
      'levels.bad.fsync: must be "commit", "none" or "interval:<ms>ms" (e.g. "interval:100ms")',
      'levels.bad.locations[0].file: must be a path, or { "directory": "...", "segmentBytes": 67108864 }',
      'levels.empty.locations: give one location, e.g. [{ "file": "./data/{partition}" }]',
      'levels.odd.locations[0]: a location has exactly one key, its kind: { "file": "./data/{partition}" }, { "memory": {} }, { "lmdb": "./lmdb/{partition}" } or { "azure": { ... } } (got "tape")',
      'partitions["p 1"]: a partition name is 1-100 letters, digits, ".", "_" or "-", starting with a letter or digit',
      'partitions.p2: level "missing" is not defined in "levels" (defined: "good", "bad", "empty", "odd")',
      'partitions.p3: must be the name of a level in "levels"',
      'routing.extra: unknown key: expected one of "hash", "prefixes"',
      'routing.hash[1]: partition "nope" is not defined in "partitions"',
      'routing.prefixes.x-: partition "gone" is not defined in "partitions"',
      'nodes.n1.partitions: lists the same partition twice',
      'nodes: partition "p2" is hosted by no node: add it to one node\'s "partitions"',
      'nodes: partition "p3" is hosted by no node: add it to one node\'s "partitions"',
    ]);
  });

  it('checks references between sections', async () => {
    const issues = await issuesOf({
      brokers: ['tcp://127.0.0.1:5555'],
      levels: { good: { locations: [{ file: './d/{partition}' }] } },
      partitions: { p1: 'good', p2: 'missing' },
      routing: { hash: ['p1', 'nope'], prefixes: { 'x-': 'gone' } },
      nodes: { n1: { partitions: ['p1', 'ghost'] }, n2: { partitions: ['p1'] } },
    });
    expect(issues).toEqual([
      'partitions.p2: level "missing" is not defined in "levels" (defined: "good")',
      'routing.hash[1]: partition "nope" is not defined in "partitions"',
      'routing.prefixes.x-: partition "gone" is not defined in "partitions"',
      'nodes.n1.partitions[1]: partition "ghost" is not defined in "partitions"',
      'nodes.n2.partitions[0]: partition "p1" is also hosted by node "n1": a partition has one writer, so one node (fail-over replicas are not supported yet)',
      'nodes: partition "p2" is hosted by no node: add it to one node\'s "partitions"',
    ]);
  });

  it('refuses mirrored locations with a clear message', async () => {
    const issues = await issuesOf({
      ...valid,
      levels: { ...valid.levels, standard: { locations: [{ file: '/disk1/{partition}' }, { file: '/disk2/{partition}' }] } },
    });
    expect(issues).toEqual(['levels.standard.locations: mirrored locations are not supported yet: give exactly one location (got 2)']);
  });

  it('refuses a file location shared by several partitions', async () => {
    const issues = await issuesOf({ ...valid, levels: { ...valid.levels, standard: { locations: [{ file: './data' }] } } });
    expect(issues).toEqual([
      'partitions.bank-2: partition "bank-2" would share the directory /etc/sluice/data with "bank-1": put "{partition}" in level "standard"\'s file path',
    ]);
  });

  it('requires the sections and an object', async () => {
    expect(await issuesOf([])).toEqual([': must be an object (the whole config)']);
    expect(await issuesOf({})).toEqual(['brokers: is required', 'levels: is required', 'partitions: is required', 'routing: is required']);
    expect(await issuesOf({ ...valid, routing: {} })).toEqual([
      'routing: give "hash" (a partition list streams are hashed over) and/or "prefixes" (stream-id prefix → partition)',
    ]);
  });

  it('loads lmdb / azure locations from their package, or says to install it', async () => {
    const missing = Object.assign(new Error("Cannot find package '@sluice/store-lmdb'"), { code: 'ERR_MODULE_NOT_FOUND' });
    const lmdbLevel = { locations: [{ lmdb: './lmdb/{partition}' }], fsync: 'commit' };
    expect(
      await issuesOf(
        { ...valid, levels: { ...valid.levels, standard: lmdbLevel } },
        { importPackage: () => Promise.reject(missing) },
      ),
    ).toEqual([
      'levels.standard.locations[0].lmdb: "lmdb" locations need @sluice/store-lmdb, which is not installed: run `npm install @sluice/store-lmdb` next to @sluice/broker',
    ]);
    expect(
      await issuesOf({ ...valid, levels: { ...valid.levels, standard: lmdbLevel } }, { importPackage: async () => ({ somethingElse: 1 }) }),
    ).toEqual(['levels.standard.locations[0].lmdb: @sluice/store-lmdb does not export createLmdbStorage(): install a version of it that matches @sluice/broker']);

    const made: Record<string, unknown>[] = [];
    const fakeStorage = {} as PartitionStorage;
    const factory = (options: Record<string, unknown>): PartitionStorage => {
      made.push(options);
      return fakeStorage;
    };
    const imported: string[] = [];
    const config = await parseNodeConfig(
      {
        ...valid,
        levels: {
          ...valid.levels,
          standard: lmdbLevel,
          fast: { locations: [{ azure: { container: 'logs', connectionString: 'UseDevelopmentStorage=true' } }] },
        },
      },
      '/etc/sluice',
      {
        importPackage: async (name) => {
          imported.push(name);
          return name === '@sluice/store-lmdb' ? { createLmdbStorage: factory } : { createAzureStorage: factory };
        },
      },
    );
    expect(imported.sort()).toEqual(['@sluice/store-azure', '@sluice/store-lmdb']); // each loaded once
    expect(config.partitions['bank-2'].location).toMatchObject({ kind: 'lmdb', packageName: '@sluice/store-lmdb', options: { directory: '/etc/sluice/lmdb/bank-2' } });
    expect(config.partitions['bank-2'].createStorage()).toBe(fakeStorage);
    expect(config.partitions.analytics.createStorage()).toBe(fakeStorage);
    expect(made).toEqual([
      { directory: '/etc/sluice/lmdb/bank-2', fsync: { kind: 'commit' } },
      { container: 'logs', connectionString: 'UseDevelopmentStorage=true', prefix: 'analytics' },
    ]);
  });

  it('loads a file: resolves paths against its folder, and opens working file storage', async () => {
    const directory = await tempDir();
    const path = join(directory, 'sluice.json');
    await writeFile(path, JSON.stringify({ ...valid, nodes: undefined }));
    const config = await loadNodeConfig(path);
    expect(config.source).toBe(path);
    expect(config.partitions['bank-1'].location).toEqual({ kind: 'file', directory: join(directory, 'data', 'bank-1') });
    const partition = await openPartition({ storage: config.partitions['bank-1'].createStorage(), name: 'bank-1' });
    try {
      await partition.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array([1]) }] });
      expect(partition.lastSeq).toBe(1);
    } finally {
      await partition.close();
    }
  });

  it('reports a missing file and invalid JSON as ConfigError', async () => {
    const directory = await tempDir();
    await expect(loadNodeConfig(join(directory, 'none.json'))).rejects.toThrow(/none\.json, 1 problem:\n {2}- \(file\): cannot read it \(no such file\)/);
    await writeFile(join(directory, 'bad.json'), '{ "brokers": [,] }');
    await expect(loadNodeConfig(join(directory, 'bad.json'))).rejects.toThrow(/is not valid JSON/);
  });
});

describe('real backend packages', () => {
  it('opens an "lmdb" location from @sluice/store-lmdb with the level\'s fsync policy', async () => {
    const base = await tempDir();
    const config = await parseNodeConfig(
      {
        brokers: ['tcp://127.0.0.1:5555'],
        levels: { durable: { locations: [{ lmdb: './lmdb/{partition}' }], fsync: 'commit' } },
        partitions: { 'ledger-1': 'durable' },
        routing: { hash: ['ledger-1'] },
      },
      base,
    );
    const storage = config.partitions['ledger-1'].createStorage();
    expect(storage.kind).toBe('lmdb');
    const partition = await openPartition({ storage, name: 'ledger-1' });
    try {
      expect((await partition.append({ streamId: 's', events: [{ type: 'E', data: new Uint8Array([1]) }] })).lastSeq).toBe(1);
    } finally {
      await partition.close();
    }
  });
});
