import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.js';
import { jsonLines, sluice, startSluice, tempFolder, type RunningCli } from './testing/cli-harness.js';

/**
 * The commands against a cluster: `sluice broker` and `sluice node` started in-process on a
 * free port, then append / read / head / tail through `--config` and `--broker`.
 * Invariants: a cluster answers like a local partition (same output, same exit codes); a
 * CURVE broker serves only allowed keys.
 */

interface Cluster {
  readonly folder: string;
  readonly config: string;
  readonly endpoint: string;
  readonly broker: RunningCli;
  readonly node: RunningCli;
}

async function startCluster(options: { brokerArgs?: string[]; nodeArgs?: string[]; folder?: string } = {}): Promise<Cluster> {
  const folder = options.folder ?? (await tempFolder());
  const broker = startSluice(['broker', '--endpoint', 'tcp://127.0.0.1:0', ...(options.brokerArgs ?? [])], { cwd: folder });
  const [endpoint] = await broker.stdout.waitForLines(1);
  expect(endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
  const config = join(folder, 'sluice.json');
  await writeFile(
    config,
    JSON.stringify({
      brokers: [endpoint],
      levels: { standard: { locations: [{ file: './data/{partition}' }], fsync: 'commit' } },
      partitions: { p1: 'standard', p2: 'standard' },
      routing: { prefixes: { 'a-': 'p1', 'b-': 'p2' } },
    }),
  );
  const node = startSluice(['node', '--config', config, '--node', 'node-a', ...(options.nodeArgs ?? [])], { cwd: folder });
  const [started] = await node.stdout.waitForLines(1);
  expect(started).toBe('node node-a: p1, p2');
  return { folder, config, endpoint, broker, node };
}

describe('sluice broker and node', () => {
  it('serve appends and reads through --config and --broker, and stop cleanly with exit 0', async () => {
    const cluster = await startCluster();
    const appended = await sluice(['append', '--config', cluster.config, '--stream', 'a-1', '--type', 'Opened', '--data', '{"n":1}', '--expected-version', '0']);
    expect(appended).toMatchObject({ code: ExitCode.Ok, lines: ['appended #1 a-1@1'] });
    const batch = await sluice(['append', '--config', cluster.config, '--json'], {
      stdin: ['{"stream":"a-1","type":"Deposited","data":{"n":2},"expectedVersion":1}', '{"stream":"b-7","type":"Opened","data":"b"}'],
    });
    expect(batch.code).toBe(ExitCode.Ok);
    expect(jsonLines(batch.stdout).map((line) => [line.line, line.firstSeq])).toEqual([
      [1, 2],
      [2, 1], // b-7 routes to p2
    ]);

    const read = await sluice(['read', '--config', cluster.config, '--partition', 'p1', '--json']);
    expect(jsonLines(read.stdout)).toMatchObject([
      { seq: 1, stream: 'a-1', version: 1, type: 'Opened', data: { n: 1 }, level: 'standard' },
      { seq: 2, stream: 'a-1', version: 2, type: 'Deposited', data: { n: 2 }, level: 'standard' },
    ]);
    const byBroker = await sluice(['read', '--broker', cluster.endpoint, '--partition', 'p2']);
    // Node-served partitions record their level in each commit (issue 11); the read shows it.
    expect(byBroker.lines).toEqual(['#1 b-7@1 Opened "b" level=standard']);
    const byStream = await sluice(['read', '--config', cluster.config, '--partition', 'p1', '--stream', 'a-1', '--from-seq', '2']);
    expect(byStream.lines).toEqual(['#2 a-1@2 Deposited {"n":2} level=standard']);

    const head = await sluice(['head', '--broker', cluster.endpoint, '--partition', 'p1', '--stream', 'a-1', '--json']);
    expect(JSON.parse(head.lines[0])).toMatchObject({ lastSeq: 2, streamCount: 1, streamVersion: 2, writable: true, epoch: 0 });

    expect(await cluster.node.stop()).toBe(ExitCode.Ok);
    expect(cluster.node.stderr.text).toContain('stopped; its partitions are closed');
    expect(await cluster.broker.stop()).toBe(ExitCode.Ok);
    expect(cluster.broker.stderr.text).toContain('sluice broker: stopped');
    // The node closed its partitions: the folder is readable (and writable) locally now.
    expect((await sluice(['read', '--path', join(cluster.folder, 'data', 'p1')])).lines).toHaveLength(2);
  });

  it('maps cluster failures to the same exit codes as local ones', async () => {
    const cluster = await startCluster();
    const args = ['append', '--config', cluster.config, '--stream', 'a-9', '--type', 'T', '--data', '1', '--expected-version', 'no-stream'];
    expect((await sluice(args)).code).toBe(ExitCode.Ok);
    const conflict = await sluice(args);
    expect(conflict.code).toBe(ExitCode.Conflict);
    expect(conflict.stderr).toContain('expected no-stream');

    const unknown = await sluice(['head', '--config', cluster.config, '--partition', 'p9']);
    expect(unknown.code).toBe(ExitCode.NotFound);
    expect(unknown.stderr).toContain('unknown partition "p9"');
    const unroutable = await sluice(['append', '--config', cluster.config, '--stream', 'c-1', '--type', 'T', '--data', '1']);
    expect(unroutable.code).toBe(ExitCode.NotFound);
    const wrongPartition = await sluice(['append', '--config', cluster.config, '--partition', 'p2', '--stream', 'a-1', '--type', 'T', '--data', '1']);
    expect(wrongPartition.code).toBe(ExitCode.Usage);
    expect(wrongPartition.stderr).toContain('routes to partition "p1", not "p2"');
    expect((await sluice(['read', '--broker', cluster.endpoint])).code).toBe(ExitCode.Usage);
  });

  it('follows a partition through the broker with tail', async () => {
    const cluster = await startCluster();
    const tail = startSluice(['tail', '--broker', cluster.endpoint, '--partition', 'p1', '--from-seq', '1', '--poll-ms', '50', '--json']);
    for (const n of [1, 2]) {
      await sluice(['append', '--config', cluster.config, '--stream', 'a-1', '--type', 'Tick', '--data', String(n)]);
    }
    const lines = await tail.stdout.waitForLines(2);
    expect(lines.map((line) => JSON.parse(line))).toMatchObject([
      { seq: 1, data: 1 },
      { seq: 2, data: 2 },
    ]);
    expect(await tail.stop()).toBe(ExitCode.Ok);
  });

  it('exits 4 when no broker answers', async () => {
    const result = await sluice(['head', '--broker', 'tcp://127.0.0.1:9', '--partition', 'p1', '--timeout-ms', '50']);
    expect(result.code).toBe(ExitCode.Unavailable);
    expect(result.stderr).toContain('did not answer');
    expect(result.stderr).toContain('hint:');
  });

  it('prints the broker as JSON and reports workers with --verbose', async () => {
    const folder = await tempFolder();
    const broker = startSluice(['broker', '--endpoint', 'tcp://127.0.0.1:*', '--worker-endpoint', 'tcp://127.0.0.1:0', '--json', '--verbose']);
    const [first] = await broker.stdout.waitForLines(1);
    const listening = JSON.parse(first) as { event: string; endpoint: string; workerEndpoint: string };
    expect(listening).toMatchObject({ event: 'listening' });
    expect(listening.workerEndpoint).not.toBe(listening.endpoint);
    const config = join(folder, 'sluice.json');
    await writeFile(
      config,
      JSON.stringify({
        brokers: [listening.workerEndpoint],
        levels: { mem: { locations: [{ memory: {} }] } },
        partitions: { p1: 'mem' },
        routing: { hash: ['p1'] },
      }),
    );
    const node = startSluice(['node', '--config', config]);
    await node.stdout.waitForLines(1);
    const events = await broker.stdout.waitForLines(2);
    expect(JSON.parse(events[1])).toMatchObject({ event: 'worker-ready', service: 'sluice.partition.p1' });
    const appended = await sluice(['append', '--broker', listening.endpoint, '--partition', 'p1', '--stream', 's', '--type', 'T', '--data', '1']);
    expect(appended.code).toBe(ExitCode.Ok);
    await node.stop();
    expect(await broker.stop()).toBe(ExitCode.Ok);
    expect(jsonLines(broker.stdout.text).at(-1)).toMatchObject({ event: 'stopped', stats: { repliesRouted: 1 } });
  });
});

describe('sluice broker with CURVE', () => {
  it('serves allowed client and node keys and refuses others with exit 5', async () => {
    const folder = await tempFolder();
    const key = async (name: string): Promise<string> => {
      const result = await sluice(['keygen', '--out', name], { cwd: folder });
      expect(result.code).toBe(ExitCode.Ok);
      return result.lines[0];
    };
    await key('broker');
    const app = await key('app');
    const node = await key('node');
    await key('stranger');
    await writeFile(join(folder, 'allowed.txt'), `# who may connect\n${app} app\n${node} node-a\n`);

    const cluster = await startCluster({
      folder,
      brokerArgs: ['--curve-secret-key-file', 'broker.key', '--allow-client-keys-file', 'allowed.txt'],
      nodeArgs: ['--curve-server-key', './broker.pub', '--curve-secret-key-file', 'node.key'],
    });
    expect(cluster.broker.stderr.text).toContain('2 client key(s) allowed');
    const secure = ['--curve-server-key', './broker.pub'];
    const appended = await sluice(
      ['append', '--config', 'sluice.json', ...secure, '--curve-secret-key-file', 'app.key', '--stream', 'a-1', '--type', 'T', '--data', '1'],
      { cwd: folder },
    );
    expect(appended).toMatchObject({ code: ExitCode.Ok, lines: ['appended #1 a-1@1'] });

    const refused = await sluice(
      ['read', '--config', 'sluice.json', '--partition', 'p1', ...secure, '--curve-secret-key-file', 'stranger.key'],
      { cwd: folder },
    );
    expect(refused.code).toBe(ExitCode.Refused);
    expect(refused.stderr).toContain("refused this client's CURVE public key");

    const plain = await sluice(['head', '--config', 'sluice.json', '--partition', 'p1', '--timeout-ms', '100'], { cwd: folder });
    expect(plain.code).toBe(ExitCode.Unavailable);

    const halfCurve = await sluice(['head', '--config', 'sluice.json', '--partition', 'p1', ...secure], { cwd: folder });
    expect(halfCurve.code).toBe(ExitCode.Usage);
    const badList = join(folder, 'bad.txt');
    await writeFile(badList, 'not-a-key\n');
    const badBroker = await sluice(['broker', '--endpoint', 'tcp://127.0.0.1:0', '--curve-secret-key-file', 'broker.key', '--allow-client-keys-file', badList], {
      cwd: folder,
    });
    expect(badBroker.code).toBe(ExitCode.Usage);
    expect(badBroker.stderr).toContain('line(s) 1');
    // Nothing the commands printed holds a secret key.
    const { readFile } = await import('node:fs/promises');
    const secret = (await readFile(join(folder, 'broker.key'), 'utf8')).trim().split('\n').at(-1) as string;
    for (const output of [cluster.broker.stdout.text, cluster.broker.stderr.text, refused.stderr, badBroker.stderr]) {
      expect(output).not.toContain(secret);
    }
  });
});

describe('a cluster of one broker and two nodes', () => {
  it('serves different partitions from two `sluice node` processes to the CLI and the client SDK', async () => {
    const { createStoreClientFromConfig } = await import('@sluice/client');
    const { loadSluiceConfig } = await import('@sluice/config');
    const folder = await tempFolder();
    const broker = startSluice(['broker', '--endpoint', 'tcp://127.0.0.1:0'], { cwd: folder });
    const [endpoint] = await broker.stdout.waitForLines(1);
    const config = join(folder, 'sluice.json');
    await writeFile(
      config,
      JSON.stringify({
        brokers: [endpoint],
        levels: { standard: { locations: [{ file: './data/{partition}' }], fsync: 'commit' } },
        partitions: { p1: 'standard', p2: 'standard' },
        routing: { prefixes: { 'a-': 'p1', 'b-': 'p2' } },
        nodes: { 'node-a': { partitions: ['p1'] }, 'node-b': { partitions: ['p2'] } },
      }),
    );
    const nodeA = startSluice(['node', '--config', config, '--node', 'node-a'], { cwd: folder });
    const nodeB = startSluice(['node', '--config', config, '--node', 'node-b'], { cwd: folder });
    expect(await nodeA.stdout.waitForLines(1)).toEqual(['node node-a: p1']);
    expect(await nodeB.stdout.waitForLines(1)).toEqual(['node node-b: p2']);

    // The CLI appends to both partitions through the broker.
    expect((await sluice(['append', '--config', config, '--stream', 'a-1', '--type', 'Opened', '--data', '"A"'])).lines).toEqual(['appended #1 a-1@1']);
    expect((await sluice(['append', '--config', config, '--stream', 'b-1', '--type', 'Opened', '--data', '"B"'])).lines).toEqual(['appended #1 b-1@1']);

    // The client SDK, from the same config, sees each node's partition and appends through it.
    const client = createStoreClientFromConfig(await loadSluiceConfig(config), { timeoutMs: 5000 });
    try {
      const result = await client.append({ streamId: 'b-1', expectedVersion: 1, events: [{ type: 'Renamed', data: new TextEncoder().encode('"B2"') }] });
      expect(result).toMatchObject({ firstSeq: 2, streams: [{ streamId: 'b-1', version: 2 }] });
      expect((await client.head('p1')).lastSeq).toBe(1);
      expect((await client.head('p2')).lastSeq).toBe(2);
    } finally {
      await client.close();
    }
    // Each commit records the level its partition was configured with; the read through the broker shows it.
    expect((await sluice(['read', '--config', config, '--partition', 'p2'])).lines).toEqual(['#1 b-1@1 Opened "B" level=standard', '#2 b-1@2 Renamed "B2" level=standard']);

    expect(await nodeA.stop()).toBe(ExitCode.Ok);
    expect(await nodeB.stop()).toBe(ExitCode.Ok);
    expect(await broker.stop()).toBe(ExitCode.Ok);
  });
});

describe('limits and heartbeats as flags and config keys', () => {
  it('`sluice broker` takes "heartbeats" and "limits.broker" from --config, and flags win', async () => {
    const folder = await tempFolder();
    const config = join(folder, 'sluice.json');
    await writeFile(
      config,
      JSON.stringify({
        brokers: ['tcp://127.0.0.1:5555'],
        levels: { standard: { locations: [{ memory: {} }] } },
        partitions: { p1: 'standard' },
        routing: { hash: ['p1'] },
        heartbeats: { intervalMs: 1000, liveness: 5, busyTimeoutMs: 90000 },
        limits: { broker: { serviceQueueMax: 7, clientInFlightMax: 500, requestBytesMax: 1048576 } },
      }),
    );
    const broker = startSluice(['broker', '--endpoint', 'tcp://127.0.0.1:0', '--json', '--config', config, '--heartbeat-ms', '700', '--client-in-flight-max', '900', '--deliveries-max', '4']);
    const [listening] = jsonLines((await broker.stdout.waitForLines(1)).join('\n'));
    expect(listening).toMatchObject({
      event: 'listening',
      settings: {
        heartbeatIntervalMs: 700, // flag over config
        heartbeatLiveness: 5, // config
        busyTimeoutMs: 90000,
        serviceQueueMax: 7,
        clientInFlightMax: 900, // flag over config
        requestBytesMax: 1048576,
        deliveriesMax: 4, // flag over default
        queuedRequestsMax: 1_000_000, // default
      },
    });
  });

  it('refuses a limit flag out of range with a usage error', async () => {
    const result = await sluice(['broker', '--endpoint', 'tcp://127.0.0.1:0', '--message-frames-max', '2']);
    expect(result.code).toBe(ExitCode.Usage);
    expect(result.stderr).toContain('--message-frames-max must be an integer of at least 4');
  });
});

describe('structured logs (pino) of sluice broker and sluice node', () => {
  it('writes JSON log lines on stderr when it is not a terminal: startup, worker churn, partitions, stop', async () => {
    const folder = await tempFolder();
    const broker = startSluice(['broker', '--endpoint', 'tcp://127.0.0.1:0'], { cwd: folder });
    const [endpoint] = await broker.stdout.waitForLines(1);
    const config = join(folder, 'sluice.json');
    await writeFile(
      config,
      JSON.stringify({
        brokers: [endpoint],
        levels: { standard: { locations: [{ file: './data/{partition}' }], fsync: 'none' } },
        partitions: { p1: 'standard' },
        routing: { hash: ['p1'] },
      }),
    );
    const node = startSluice(['node', '--config', config, '--node', 'n1', '--concurrency', '1'], { cwd: folder });
    await node.stdout.waitForLines(1);
    // The broker logs the node's worker registering (an event: wait for the line).
    await broker.stderr.waitForLines(2);
    await node.stop();
    expect(await broker.stop()).toBe(ExitCode.Ok);

    const brokerLog = jsonLines(broker.stderr.text);
    expect(brokerLog[0]).toMatchObject({ name: 'sluice broker', level: 30, endpoint, options: { clientInFlightMax: 200_000 } });
    expect(brokerLog.some((line) => line.event === 'worker-ready' && line.service === 'sluice.partition.p1')).toBe(true);
    expect(brokerLog.at(-1)).toMatchObject({ msg: expect.stringContaining('sluice broker: stopped'), stats: expect.any(Object) });
    const nodeLog = jsonLines(node.stderr.text);
    expect(nodeLog[0]).toMatchObject({ name: 'sluice node', event: 'partition-opened', partition: 'p1', lastSeq: 0, recovery: { droppedBytes: 0 } });
    expect(nodeLog.at(-1)).toMatchObject({ msg: expect.stringContaining('stopped; its partitions are closed'), stats: { partitions: { p1: { state: 'open' } } } });
  });

  it('writes readable lines on a terminal', async () => {
    const broker = startSluice(['broker', '--endpoint', 'tcp://127.0.0.1:0'], { stderrIsTTY: true });
    await broker.stdout.waitForLines(1);
    await broker.stderr.waitForLines(1);
    await broker.stop();
    const first = broker.stderr.lines[0];
    expect(() => JSON.parse(first) as unknown).toThrow();
    expect(first).toContain('sluice broker: listening on tcp://127.0.0.1:');
    expect(first).toContain('INFO');
  });
});
