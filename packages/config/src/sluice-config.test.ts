import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from './config-error.js';
import { loadSluiceConfig, parseSluiceConfig, partitionsOfNode } from './sluice-config.js';

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
    fast: { locations: [{ file: { directory: '/var/sluice/{partition}', segmentBytes: 1048576, preallocate: 'zero-fill' } }], fsync: 'interval:100ms' },
    scratch: { locations: [{ memory: {} }] },
  },
  partitions: { 'bank-1': 'standard', 'bank-2': 'standard', analytics: 'fast', cache: 'scratch' },
  routing: { prefixes: { 'metric-': 'analytics', 'tmp-': 'cache' }, hash: ['bank-1', 'bank-2'] },
  nodes: { 'node-a': { partitions: ['bank-1', 'analytics'] }, 'node-b': { partitions: ['bank-2', 'cache'] } },
};

/** The issues of a config that must fail, as "path: message" lines. */
function issuesOf(json: unknown): string[] {
  let error: unknown;
  try {
    parseSluiceConfig(json, '/etc/sluice');
  } catch (caught) {
    error = caught;
  }
  expect(error).toBeInstanceOf(ConfigError);
  return (error as ConfigError).issues.map((issue) => `${issue.path}: ${issue.message}`);
}

describe('sluice.json', () => {
  it('resolves a valid config: paths against its folder, {partition}, services, fsync, nodes', async () => {
    const config = await parseSluiceConfig(valid, '/etc/sluice');
    expect(config.brokers).toEqual(valid.brokers);
    expect(config.partitions['bank-1']).toMatchObject({
      name: 'bank-1',
      level: 'standard',
      service: 'sluice.partition.bank-1',
      location: { kind: 'file', directory: '/etc/sluice/data/bank-1' },
      fsync: { kind: 'commit' },
    });
    expect(config.partitions.analytics).toMatchObject({
      location: { kind: 'file', directory: '/var/sluice/analytics', segmentBytes: 1048576, preallocate: 'zero-fill' },
      fsync: { kind: 'interval', intervalMs: 100 },
    });
    expect(config.partitions.cache.location).toEqual({ kind: 'memory' });
    expect(config.levels.standard.locations[0]).toEqual({ kind: 'file', directory: '/etc/sluice/data/{partition}' });
    expect(config.routing).toEqual({ prefixes: valid.routing.prefixes, hash: ['bank-1', 'bank-2'] });
    expect(partitionsOfNode(config, 'node-a')).toEqual(['bank-1', 'analytics']);
    expect(() => partitionsOfNode(config)).toThrow(/no node name was given: start the node with one of "node-a", "node-b"/);
    expect(() => partitionsOfNode(config, 'node-z')).toThrow(ConfigError);
    const { nodes: _, ...withoutNodes } = valid;
    expect(partitionsOfNode(await parseSluiceConfig(withoutNodes, '/etc/sluice'))).toEqual(['bank-1', 'bank-2', 'analytics', 'cache']);
  });

  it('reports every problem at once, each with its path', async () => {
    const issues = issuesOf({
      brokers: ['http://x', 'tcp://a:1', 'tcp://a:1'],
      levels: {
        good: { locations: [{ file: './d/{partition}' }] },
        bad: { locations: [{ file: 5 }], fsync: 'sometimes', ship: [{ azure: 'x' }], alertLagMs: 0, quorum: 2 },
        empty: { locations: [] },
        odd: { locations: [{ Tape: '/dev/st0' }] },
        holes: { locations: [{ file: { directory: './h/{partition}', preallocate: 'fallocate' } }] },
      },
      partitions: { 'p 1': 'good', p2: 'missing', p3: 42 },
      routing: { hash: ['p2', 'nope'], prefixes: { 'x-': 'gone' }, extra: true },
      nodes: { n1: { partitions: ['p2', 'p2'] } },
      heartbeats: { intervalMs: 0, liveness: 'often' },
      limits: { broker: { serviceQueueMax: -1, queueLength: 5 }, node: { concurrency: 1.5 }, disk: {} },
      colour: 'blue',
    });
    expect(issues).toEqual([
      'colour: unknown key: expected one of "brokers", "levels", "partitions", "routing", "nodes", "heartbeats", "limits"',
      'brokers[0]: must be a ZeroMQ endpoint such as "tcp://127.0.0.1:5555"',
      'brokers: lists the same endpoint twice',
      'levels.bad.quorum: write quorum acknowledgement as "ack": { "quorum": 2 }',
      'levels.bad.fsync: must be "commit", "none" or "interval:<ms>ms" (e.g. "interval:100ms")',
      'levels.bad.locations[0].file: must be a path, or { "directory": "...", "segmentBytes": 67108864, "preallocate": "sparse" }',
      "levels.bad.ship[0].azure: must be an object (the backend's options)",
      'levels.bad.alertLagMs: must be at least 1',
      'levels.empty.locations: give at least one location, e.g. [{ "file": "./data/{partition}" }]',
      'levels.odd.locations[0]: a location has exactly one key, its kind: { "file": "./data/{partition}" }, { "memory": {} }, { "lmdb": "./lmdb/{partition}" }, { "azure": { ... } } or { "<kind>": { ... } } (got "Tape")',
      'levels.holes.locations[0].file.preallocate: must be "sparse" or "zero-fill"',
      'partitions["p 1"]: a partition name is 1-100 letters, digits, ".", "_" or "-", starting with a letter or digit',
      'partitions.p2: level "missing" is not defined in "levels" (defined: "good", "bad", "empty", "odd", "holes")',
      'partitions.p3: must be the name of a level in "levels"',
      'routing.extra: unknown key: expected one of "hash", "prefixes"',
      'routing.hash[1]: partition "nope" is not defined in "partitions"',
      'routing.prefixes.x-: partition "gone" is not defined in "partitions"',
      'nodes.n1.partitions: lists the same partition twice',
      'nodes: partition "p2" is hosted by no node: add it to one node\'s "partitions"',
      'nodes: partition "p3" is hosted by no node: add it to one node\'s "partitions"',
      'heartbeats.intervalMs: must be at least 1',
      'heartbeats.liveness: must be a number',
      'limits.disk: unknown key: expected one of "broker", "node", "client"',
      'limits.broker.queueLength: unknown key: expected one of "serviceQueueMax", "queuedRequestsMax", "requestExpiryMs", "servicesMax", "workersMax", "deliveriesMax", "frameBytesMax", "messageFramesMax", "sendQueueMax", "clientInFlightMax", "requestBytesMax"',
      'limits.broker.serviceQueueMax: must be at least 0',
      'limits.node.concurrency: must be an integer',
    ]);
  });

  it('checks references between sections', async () => {
    const issues = issuesOf({
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

  it('resolves a level of several locations, targets, alertLagMs and ack per partition (issue 11)', async () => {
    const config = parseSluiceConfig(
      {
        ...valid,
        levels: {
          ...valid.levels,
          standard: {
            locations: [{ file: '/disk1/{partition}' }, { lmdb: '/disk2/{partition}' }, { memory: {} }],
            ship: [{ file: './backup/{partition}' }, { azure: { container: 'archive' } }],
            alertLagMs: 1000,
            ack: { quorum: 2 },
          },
        },
      },
      '/etc/sluice',
    );
    expect(config.partitions['bank-1']).toMatchObject({
      locations: [{ kind: 'file', directory: '/disk1/bank-1' }, { kind: 'lmdb', options: { directory: '/disk2/bank-1' } }, { kind: 'memory' }],
      location: { kind: 'file', directory: '/disk1/bank-1' },
      ship: [{ kind: 'file', directory: '/etc/sluice/backup/bank-1' }, { kind: 'azure', options: { container: 'archive', prefix: 'bank-1' } }],
      alertLagMs: 1000,
      ack: { mode: 'quorum', quorum: 2 },
    });
    expect(config.partitions.analytics.ack).toEqual({ mode: 'local' });
  });

  it('puts each partition\'s persisted index beside its first local location, or in the level\'s "index" folder', async () => {
    const config = parseSluiceConfig(
      {
        ...valid,
        levels: { ...valid.levels, fast: { ...valid.levels.fast, index: './index/{partition}' }, scratch: { locations: [{ lmdb: './lmdb/{partition}' }] } },
      },
      '/etc/sluice',
    );
    expect(config.partitions['bank-1'].indexDirectory).toBe('/etc/sluice/data/bank-1.index');
    expect(config.partitions.analytics.indexDirectory).toBe('/etc/sluice/index/analytics');
    expect(config.partitions.cache.indexDirectory).toBe('/etc/sluice/lmdb/cache.index');
    expect(config.levels.fast.index).toBe('/etc/sluice/index/{partition}');
    // Memory (and Azure) have no local folder: no index folder unless the level names one.
    expect(parseSluiceConfig(valid, '/etc/sluice').partitions.cache.indexDirectory).toBeUndefined();
  });

  it('refuses an index folder shared by partitions or with a location', () => {
    expect(issuesOf({ ...valid, levels: { ...valid.levels, standard: { ...valid.levels.standard, index: './index' } } })).toEqual([
      'levels.standard.index: partition "bank-2" would keep its index in /etc/sluice/index, already used by partition "bank-1": put "{partition}" in the index path and give it its own folder',
    ]);
    expect(issuesOf({ ...valid, levels: { ...valid.levels, standard: { ...valid.levels.standard, index: './data/{partition}' } } })).toEqual([
      'levels.standard.index: partition "bank-1" would keep its index in /etc/sluice/data/bank-1, already used by one of its locations: put "{partition}" in the index path and give it its own folder',
      'levels.standard.index: partition "bank-2" would keep its index in /etc/sluice/data/bank-2, already used by one of its locations: put "{partition}" in the index path and give it its own folder',
    ]);
    expect(issuesOf({ ...valid, levels: { ...valid.levels, standard: { ...valid.levels.standard, index: 42 } } })[0]).toMatch(/^levels\.standard\.index: /);
  });

  it('checks ack against the level\'s targets', async () => {
    const issues = issuesOf({
      ...valid,
      levels: {
        ...valid.levels,
        standard: { locations: [{ file: '/d/{partition}' }], ship: [{ memory: {} }], ack: { quorum: 2 } },
        fast: { locations: [{ memory: {} }], ack: 'remote' },
      },
    });
    expect(issues).toEqual([
      'levels.standard.ack.quorum: is 2 but the level ships to 1 target(s): list at least 2 in "ship", or lower the quorum',
      'levels.fast.ack: must be "local", or { "quorum": <n> } (acknowledge once n of the level\'s "ship" targets hold the commit)',
    ]);
  });

  it('refuses two copies of one partition in one file folder', async () => {
    const issues = issuesOf({ ...valid, levels: { ...valid.levels, scratch: { locations: [{ file: '/d/{partition}' }], ship: [{ file: '/d/{partition}/' }] } } });
    expect(issues).toEqual(['partitions.cache: partition "cache" would use the directory /d/cache twice (level "scratch"): give each location and target its own folder']);
  });

  it('refuses a file location shared by several partitions', async () => {
    const issues = issuesOf({ ...valid, levels: { ...valid.levels, standard: { locations: [{ file: './data' }] } } });
    expect(issues).toEqual([
      'partitions.bank-2: partition "bank-2" would share the directory /etc/sluice/data with "bank-1": put "{partition}" in level "standard"\'s file path',
    ]);
  });

  it('requires the sections and an object', async () => {
    expect(issuesOf([])).toEqual([': must be an object (the whole config)']);
    expect(issuesOf({})).toEqual(['brokers: is required', 'levels: is required', 'partitions: is required', 'routing: is required']);
    expect(issuesOf({ ...valid, routing: {} })).toEqual([
      'routing: give "hash" (a partition list streams are hashed over) and/or "prefixes" (stream-id prefix → partition)',
    ]);
  });

  it('types backend locations and shipping targets without loading any backend package', () => {
    const config = parseSluiceConfig(
      {
        ...valid,
        levels: {
          ...valid.levels,
          standard: { locations: [{ lmdb: './lmdb/{partition}' }], fsync: 'commit', ship: [{ azure: { container: 'archive-{partition}' } }], alertLagMs: 1000 },
          fast: { locations: [{ azure: { container: 'logs' } }] },
          scratch: { locations: [{ 'my-kv': { url: 'kv://{partition}' } }] },
        },
      },
      '/etc/sluice',
    );
    expect(config.partitions['bank-2']).toMatchObject({
      location: { kind: 'lmdb', options: { directory: '/etc/sluice/lmdb/bank-2' } },
      fsyncExplicit: true,
      ship: [{ kind: 'azure', options: { container: 'archive-bank-2' } }],
    });
    expect(config.levels.standard.alertLagMs).toBe(1000);
    expect(config.partitions.analytics).toMatchObject({ location: { kind: 'azure', options: { container: 'logs', prefix: 'analytics' } }, fsyncExplicit: false, ship: [] });
    expect(config.partitions.cache.location).toEqual({ kind: 'my-kv', options: { url: 'kv://cache' } });
  });

  it('reads heartbeats and limits, leaving absent keys to the components', () => {
    const config = parseSluiceConfig(
      { ...valid, heartbeats: { intervalMs: 1000, busyTimeoutMs: 60000 }, limits: { broker: { serviceQueueMax: 200000 }, client: { timeoutMs: 5000 } } },
      '/etc/sluice',
    );
    expect(config.heartbeats).toEqual({ intervalMs: 1000, busyTimeoutMs: 60000 });
    expect(config.limits).toEqual({ broker: { serviceQueueMax: 200000 }, node: {}, client: { timeoutMs: 5000 } });
    expect(parseSluiceConfig(valid, '/etc/sluice')).toMatchObject({ heartbeats: {}, limits: { broker: {}, node: {}, client: {} } });
  });

  it('loads a file: resolves paths against its folder', async () => {
    const directory = await tempDir();
    const path = join(directory, 'sluice.json');
    await writeFile(path, JSON.stringify({ ...valid, nodes: undefined }));
    const config = await loadSluiceConfig(path);
    expect(config.source).toBe(path);
    expect(config.partitions['bank-1'].location).toEqual({ kind: 'file', directory: join(directory, 'data', 'bank-1') });
  });

  it('reports a missing file and invalid JSON as ConfigError', async () => {
    const directory = await tempDir();
    await expect(loadSluiceConfig(join(directory, 'none.json'))).rejects.toThrow(/none\.json, 1 problem:\n {2}- \(file\): cannot read it \(no such file\)/);
    await writeFile(join(directory, 'bad.json'), '{ "brokers": [,] }');
    await expect(loadSluiceConfig(join(directory, 'bad.json'))).rejects.toThrow(/is not valid JSON/);
  });
});
