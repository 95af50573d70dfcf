import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RecordedEvent } from '@sluice/store';
import { createStoreClient, type StoreClient, type StoreClientOptions } from '@sluice/client';
import { loadSluiceConfig, partitionsOfNode, type SluiceConfig } from '@sluice/config';
import type { MajordomoBroker } from '@sluice/majordomo';
import { FAST, track, waitForEvents } from '@sluice/majordomo/testing';
import { createFileStorage } from '@sluice/store-file';
import { locationFactory } from '../locations.js';
import { startNode, type StartNodeOptions, type StoreNode } from '../node.js';

/** Test-only helpers for the store service: temp dirs, configs, nodes and clients, all cleaned up after each test. */

/** Node timing that matches the harness's FAST brokers. */
export const FAST_NODE = { heartbeatIntervalMs: FAST.heartbeatIntervalMs, heartbeatLiveness: FAST.heartbeatLiveness, reconnectDelayMs: 50 } as const;

/** A fresh temp directory, removed after the test. */
export async function tempDir(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'sluice-node-'));
  track({ close: () => rm(directory, { recursive: true, force: true }) });
  return directory;
}

/** Options of {@link writeConfig}. */
export interface ClusterConfigOptions {
  readonly brokers: readonly MajordomoBroker[] | readonly string[];
  /** Partitions, hashed over in this order. */
  readonly partitions: readonly string[];
  readonly nodes?: Readonly<Record<string, readonly string[]>>;
  /** @default "none": tests need no power-failure durability, only real files */
  readonly fsync?: string;
}

/** Writes a `sluice.json` (file storage under `<directory>/data/{partition}`) and loads it. */
export async function writeConfig(directory: string, options: ClusterConfigOptions): Promise<{ path: string; config: SluiceConfig }> {
  const json = {
    brokers: options.brokers.map((broker) => (typeof broker === 'string' ? broker : broker.endpoint)),
    levels: { durable: { locations: [{ file: './data/{partition}' }], fsync: options.fsync ?? 'none' } },
    partitions: Object.fromEntries(options.partitions.map((name) => [name, 'durable'])),
    routing: { hash: options.partitions },
    ...(options.nodes === undefined
      ? {}
      : { nodes: Object.fromEntries(Object.entries(options.nodes).map(([name, partitions]) => [name, { partitions }])) }),
  };
  const path = join(directory, 'sluice.json');
  await writeFile(path, JSON.stringify(json, null, 2));
  return { path, config: await loadSluiceConfig(path) };
}

/**
 * Starts a node with fast heartbeats and resolves once every given broker has registered
 * all its workers; closed after the test.
 */
export async function startStoreNode(
  brokers: readonly MajordomoBroker[],
  options: Omit<StartNodeOptions, 'config'> & { readonly config: SluiceConfig },
): Promise<StoreNode> {
  const services = new Set(partitionsOfNode(options.config, options.nodeName).map((name) => options.config.partitions[name].service));
  const concurrency = options.concurrency ?? 4;
  const registered = brokers.map((broker) =>
    waitForEvents(broker, 'worker-ready', services.size * concurrency, (event) => services.has(event.service)),
  );
  const node = track(await startNode({ ...FAST_NODE, concurrency, locations: { file: locationFactory('file', createFileStorage) }, ...options }));
  await Promise.all(registered);
  return node;
}

/** A store client with short timeouts, closed after the test. */
export function startStoreClient(options: StoreClientOptions): StoreClient {
  return track(createStoreClient({ timeoutMs: 2000, retryDelayMs: 20, ...options }));
}

/** Collects an async iterable. */
export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/**
 * Checks a partition's log: seqs gapless from 1, and each command id in exactly one commit.
 * Returns command id → [firstSeq, lastSeq] of its commit, and the problems found.
 */
export function commitsOf(events: readonly RecordedEvent[]): { commits: Map<string, [number, number]>; problems: string[] } {
  const commits = new Map<string, [number, number]>();
  const problems: string[] = [];
  let expectSeq = 1;
  let first = 0;
  let ids: readonly string[] = [];
  for (const event of events) {
    if (event.seq !== expectSeq) problems.push(`seq ${event.seq} where ${expectSeq} was expected`);
    expectSeq = event.seq + 1;
    if (event.commitFirst) {
      first = event.seq;
      ids = event.headers?.commandIds ?? [];
    }
    if (event.commitLast) {
      for (const id of ids) {
        if (commits.has(id)) problems.push(`command ${id} applied twice: seqs ${JSON.stringify(commits.get(id))} and ${first}..${event.seq}`);
        commits.set(id, [first, event.seq]);
      }
    }
  }
  return { commits, problems };
}
