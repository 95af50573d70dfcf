import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { checkLocationFolders } from './location-identity.js';
import { parseFsyncPolicy, type FsyncPolicy } from '@sluice/store';
import * as v from 'valibot';
import { ConfigError, type ConfigIssue } from './config-error.js';
import {
  BROKER_LIMIT_KEYS,
  CLIENT_LIMIT_KEYS,
  HEARTBEAT_KEYS,
  NODE_LIMIT_KEYS,
  type HeartbeatsConfig,
  type LimitsConfig,
} from './limits.js';

/** Partition names: what `sluice.partition.<name>` services and directories can carry. */
export const PARTITION_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** The MDP service a partition is served as: `sluice.partition.<name>`. */
export function partitionServiceName(partition: string): string {
  return `sluice.partition.${partition}`;
}

/** How streams route to partitions: hashed over a list, and/or by stream-id prefix. */
export interface RoutingConfig {
  /** Partitions streams are hashed over (jump consistent hash), in this order. */
  readonly hash?: readonly string[] | undefined;
  /** Stream-id prefix → partition; the longest matching prefix wins over `hash`. */
  readonly prefixes?: Readonly<Record<string, string>> | undefined;
}

/**
 * The node config file, `sluice.json`: which brokers to register with, the reliability
 * levels, which level each partition has, how streams route to partitions and, optionally,
 * which node hosts which partitions. Format and rules: the package README ("Node config").
 */

/** A partition's log in files (`@sluice/store-file`). */
export interface FileLocationConfig {
  readonly kind: 'file';
  /** Absolute directory; in a level it may still hold `{partition}`, in a partition it does not. */
  readonly directory: string;
  /** Segment preallocation size; the file store's default when absent. */
  readonly segmentBytes?: number | undefined;
  /** How segments are preallocated (`"sparse"` or `"zero-fill"`); the file store's default when absent. */
  readonly preallocate?: 'sparse' | 'zero-fill' | undefined;
}

/** A partition's log in process memory: lost when the node stops (tests, demos, caches). */
export interface MemoryLocationConfig {
  readonly kind: 'memory';
}

/**
 * A location served by another backend (`lmdb`, `azure`, or any kind an application
 * registers with its node): the backend's options as written, `{partition}` substituted and,
 * for `lmdb`, `directory` made absolute. Which package serves a kind is the node's business
 * (its registry of location factories), not the config's.
 */
export interface BackendLocationConfig {
  readonly kind: string;
  /** Options for the backend's factory. */
  readonly options: Readonly<Record<string, unknown>>;
}

/** One synchronous copy of a partition's log. Narrow it with {@link isFileLocation}. */
export type LocationConfig = FileLocationConfig | MemoryLocationConfig | BackendLocationConfig;

/** True for a `file` location (`kind` alone does not narrow: backend kinds are any string). */
export function isFileLocation(location: LocationConfig): location is FileLocationConfig {
  return location.kind === 'file' && 'directory' in location;
}

/**
 * One asynchronous shipping destination outside the partition (DESIGN.md "target"): written
 * like a location (`{ "azure": { ... } }`, `{ "file": "/backup/{partition}" }`, ...) and opened
 * by the same location factories.
 */
export type TargetConfig = LocationConfig;

/**
 * When an append is acknowledged: `local` once every location holds it durably (the
 * default); `quorum` once, in addition, `quorum` of the level's `ship` targets hold it
 * durably (`@sluice/shipper`'s `createQuorumStorage`).
 */
export type AckConfig = { readonly mode: 'local' } | { readonly mode: 'quorum'; readonly quorum: number };

/** A named reliability policy (DESIGN.md "Reliability levels"). */
export interface ReliabilityLevelConfig {
  readonly name: string;
  /** One location, or several written as one mirror (every copy synced before an acknowledgement). */
  readonly locations: readonly LocationConfig[];
  /** @default { kind: 'commit' } */
  readonly fsync: FsyncPolicy;
  /** Whether `fsync` was written in the file (it is then passed to backend factories too). */
  readonly fsyncExplicit: boolean;
  /** Asynchronous shipping targets (empty when the level ships nowhere). */
  readonly ship: readonly TargetConfig[];
  /** Alert when a target lags by more than this; absent: the shipper's default (10000). */
  readonly alertLagMs?: number | undefined;
  /** @default { mode: 'local' } */
  readonly ack: AckConfig;
  /**
   * Folder of each partition's persisted stream and command-id indexes (`{partition}`
   * substituted, made absolute); absent: beside the first location (see
   * {@link PartitionConfig.indexDirectory}).
   */
  readonly index?: string | undefined;
}

/** One partition as a node opens it. */
export interface PartitionConfig {
  readonly name: string;
  /** Its reliability level's name. */
  readonly level: string;
  /** Its MDP service name, `sluice.partition.<name>`. */
  readonly service: string;
  /** Its locations, with `{partition}` substituted and paths made absolute: several make a mirror. */
  readonly locations: readonly LocationConfig[];
  /** Its first location (`locations[0]`). @deprecated read `locations`. */
  readonly location: LocationConfig;
  readonly fsync: FsyncPolicy;
  /** Whether the level wrote `fsync` explicitly (backends other than `file` then receive it). */
  readonly fsyncExplicit: boolean;
  /** Its level's shipping targets, `{partition}` substituted and paths made absolute. */
  readonly ship: readonly TargetConfig[];
  /** Its level's lag alert threshold for the targets. */
  readonly alertLagMs?: number | undefined;
  /** Its level's acknowledgement mode. */
  readonly ack: AckConfig;
  /**
   * Where its persisted indexes live (`openPartition`'s `indexDirectory`): the level's `index`,
   * else `<directory>.index` beside a first location that is a local folder (file, or a kind
   * whose options name a `directory`, such as LMDB), else undefined (the index is rebuilt from
   * the log on every open and kept in memory: give remote levels such as Azure an `index` folder).
   */
  readonly indexDirectory?: string | undefined;
}

/** Which partitions one node hosts. */
export interface NodeHostConfig {
  readonly partitions: readonly string[];
}

/** A validated `sluice.json`. */
export interface SluiceConfig {
  /** The file it was read from, when it was. */
  readonly source?: string | undefined;
  /** The folder relative paths were resolved against. */
  readonly baseDir: string;
  /** Broker endpoints, in fail-over order for clients; nodes register with all of them. */
  readonly brokers: readonly string[];
  readonly levels: Readonly<Record<string, ReliabilityLevelConfig>>;
  readonly partitions: Readonly<Record<string, PartitionConfig>>;
  readonly routing: RoutingConfig;
  /** Which node hosts which partitions; absent: every node hosts every partition. */
  readonly nodes?: Readonly<Record<string, NodeHostConfig>> | undefined;
  /** Heartbeat settings (keys left out take the components' defaults). */
  readonly heartbeats: HeartbeatsConfig;
  /** Limits of brokers, nodes and clients (keys left out take the components' defaults). */
  readonly limits: LimitsConfig;
}

/** Options of {@link parseSluiceConfig}. */
export interface ParseSluiceConfigOptions {
  /** The file the JSON came from, for messages. */
  readonly source?: string;
}

/** Keys whose string value is a path, per location kind: made absolute against the config's folder. */
const PATH_KEYS: Readonly<Record<string, string>> = { lmdb: 'directory' };
const KIND_PATTERN = /^[a-z][a-z0-9-]{0,49}$/;

const ROOT_KEYS = ['$schema', 'brokers', 'levels', 'partitions', 'routing', 'nodes', 'heartbeats', 'limits'];
/** Level keys people are likely to write for one that exists. */
const LEVEL_KEY_HINTS: Readonly<Record<string, string>> = {
  quorum: 'write quorum acknowledgement as "ack": { "quorum": 2 }',
};

const endpointSchema = v.pipe(
  v.string('must be a string'),
  v.regex(/^(tcp|ipc|inproc):\/\/.+/, 'must be a ZeroMQ endpoint such as "tcp://127.0.0.1:5555"'),
);
const brokersSchema = v.pipe(
  v.array(endpointSchema, 'must be an array of broker endpoints'),
  v.minLength(1, 'list at least one broker endpoint'),
  v.check((list) => new Set(list).size === list.length, 'lists the same endpoint twice'),
);
const fsyncSchema = v.pipe(
  v.string('must be a string'),
  v.check((text) => {
    try {
      parseFsyncPolicy(text);
      return true;
    } catch {
      return false;
    }
  }, 'must be "commit", "none" or "interval:<ms>ms" (e.g. "interval:100ms")'),
);
const nameListSchema = (what: string) =>
  v.pipe(
    v.array(v.string('must be a partition name'), `must be an array of ${what}`),
    v.minLength(1, `list at least one ${what.replace(/s$/, '')}`),
    v.check((list) => new Set(list).size === list.length, 'lists the same partition twice'),
  );
const objectSchema = (what: string) =>
  v.custom<Record<string, unknown>>(
    (value) => typeof value === 'object' && value !== null && !Array.isArray(value),
    `must be an object (${what})`,
  );
const levelNameSchema = v.string('must be the name of a level in "levels"');
const positiveInteger = v.pipe(v.number('must be a number'), v.integer('must be an integer'), v.minValue(1, 'must be at least 1'));
const fileObjectSchema = v.object({
  directory: v.pipe(v.string('must be a string'), v.minLength(1, 'must not be empty')),
  segmentBytes: v.optional(positiveInteger),
  preallocate: v.optional(v.picklist(['sparse', 'zero-fill'], 'must be "sparse" or "zero-fill"')),
});
const pathStringSchema = v.pipe(v.string('must be a path'), v.minLength(1, 'must not be empty'));

type Path = readonly (string | number)[];

/** Collects issues with their paths while the document is walked. */
class Issues {
  readonly list: ConfigIssue[] = [];

  add(path: Path, message: string): void {
    this.list.push({ path: formatPath(path), message });
  }

  /** Validates `input` with a valibot schema; records every issue under `path`. */
  check<const S extends v.GenericSchema>(schema: S, input: unknown, path: Path): v.InferOutput<S> | undefined {
    const result = v.safeParse(schema, input);
    if (result.success) return result.output;
    for (const issue of result.issues) {
      const sub = (issue.path ?? []).map((item) => item.key as string | number);
      this.add([...path, ...sub], issue.message);
    }
    return undefined;
  }

  /** Records each key of `value` not in `known`. */
  unknownKeys(value: Record<string, unknown>, known: readonly string[], path: Path, hints: Readonly<Record<string, string>> = {}): void {
    for (const key of Object.keys(value)) {
      if (known.includes(key)) continue;
      this.add([...path, key], hints[key] ?? `unknown key: expected one of ${known.filter((k) => !k.startsWith('$')).map((k) => `"${k}"`).join(', ')}`);
    }
  }
}

/**
 * Validates a parsed `sluice.json` and resolves it: relative paths against `baseDir`,
 * `{partition}` in location and target options. Loads nothing: which backend serves a
 * location kind is decided by the node that opens it.
 *
 * Throws {@link ConfigError} listing every problem found, each with its path.
 *
 * @example
 * const config = parseSluiceConfig(JSON.parse(text), '/etc/sluice');
 * config.partitions['bank-1'].location; // { kind: 'file', directory: '/etc/sluice/data/bank-1' }
 */
export function parseSluiceConfig(json: unknown, baseDir: string, options: ParseSluiceConfigOptions = {}): SluiceConfig {
  const issues = new Issues();
  const root = issues.check(objectSchema('the whole config'), json, []);
  if (root === undefined) throw new ConfigError(issues.list, options.source);
  issues.unknownKeys(root, ROOT_KEYS, []);
  for (const key of ['brokers', 'levels', 'partitions', 'routing']) {
    if (!(key in root)) issues.add([key], 'is required');
  }

  const brokers = 'brokers' in root ? issues.check(brokersSchema, root.brokers, ['brokers']) : undefined;
  const levels = 'levels' in root ? parseLevels(root.levels, baseDir, issues) : undefined;
  const partitionLevels = 'partitions' in root ? parsePartitions(root.partitions, levels, issues) : undefined;
  const routing = 'routing' in root ? parseRouting(root.routing, partitionLevels, issues) : undefined;
  const nodes = root.nodes === undefined ? undefined : parseNodes(root.nodes, partitionLevels, issues);
  const heartbeats = parseIntegers(root.heartbeats, HEARTBEAT_KEYS, ['heartbeats'], issues) as HeartbeatsConfig;
  const limits = parseLimits(root.limits, issues);

  let partitions: Record<string, PartitionConfig> | undefined;
  if (levels !== undefined && partitionLevels !== undefined) {
    partitions = resolvePartitions(partitionLevels, levels.valid, issues);
  }
  if (issues.list.length > 0 || brokers === undefined || levels === undefined || partitions === undefined || routing === undefined) {
    throw new ConfigError(issues.list, options.source);
  }
  const levelConfigs = Object.fromEntries([...levels.valid].map(([name, parsed]) => [name, parsed.level]));
  return { source: options.source, baseDir, brokers, levels: levelConfigs, partitions, routing, nodes, heartbeats, limits };
}

/**
 * Reads and validates a `sluice.json`; relative paths in it are resolved against the file's
 * folder, and no two partitions may keep their data in one folder however it is spelled
 * (`checkLocationFolders`). Rejects with {@link ConfigError} (unreadable file, invalid JSON,
 * or every problem in the content).
 *
 * @example
 * const config = await loadSluiceConfig('./sluice.json');
 */
export async function loadSluiceConfig(path: string): Promise<SluiceConfig> {
  const absolute = resolve(path);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (error) {
    const why = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String((error as Error).message);
    throw new ConfigError([{ path: '', message: `cannot read it (${why}): check the path, or create the file` }], absolute);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError([{ path: '', message: `is not valid JSON: ${(error as Error).message}` }], absolute);
  }
  const config = parseSluiceConfig(json, dirname(absolute), { source: absolute });
  await checkLocationFolders(config);
  return config;
}

/**
 * The partitions a node hosts: those listed for `nodeName` under `nodes`, or all of them
 * when the config has no `nodes`. Throws {@link ConfigError} when `nodes` is present and
 * `nodeName` is missing or not listed.
 */
export function partitionsOfNode(config: SluiceConfig, nodeName?: string): string[] {
  if (config.nodes === undefined) return Object.keys(config.partitions);
  const names = Object.keys(config.nodes);
  if (nodeName === undefined || config.nodes[nodeName] === undefined) {
    const given = nodeName === undefined ? 'no node name was given' : `node "${nodeName}" is not listed`;
    throw new ConfigError(
      [{ path: 'nodes', message: `${given}: start the node with one of ${names.map((n) => `"${n}"`).join(', ')}` }],
      config.source,
    );
  }
  return [...config.nodes[nodeName].partitions];
}

// ---- sections -------------------------------------------------------------------------------

interface ParsedLevel {
  readonly level: ReliabilityLevelConfig;
}

/** Valid levels, and the names of all levels (valid or not) for references to them. */
interface ParsedLevels {
  readonly valid: Map<string, ParsedLevel>;
  readonly names: ReadonlySet<string>;
}

function parseLevels(input: unknown, baseDir: string, issues: Issues): ParsedLevels | undefined {
  const levels = issues.check(objectSchema('level name → level'), input, ['levels']);
  if (levels === undefined) return undefined;
  const out = new Map<string, ParsedLevel>();
  for (const [name, raw] of Object.entries(levels)) {
    const path = ['levels', name];
    const level = issues.check(objectSchema('a level: { "locations": [...], "fsync": "commit" }'), raw, path);
    if (level === undefined) continue;
    issues.unknownKeys(level, ['locations', 'fsync', 'ship', 'alertLagMs', 'ack', 'index'], path, LEVEL_KEY_HINTS);
    const fsyncText = level.fsync === undefined ? 'commit' : issues.check(fsyncSchema, level.fsync, [...path, 'fsync']);
    const locationsRaw = issues.check(
      v.pipe(v.array(v.unknown(), 'must be an array of locations'), v.minLength(1, 'give at least one location, e.g. [{ "file": "./data/{partition}" }]')),
      level.locations,
      [...path, 'locations'],
    );
    const locations: LocationConfig[] = [];
    for (const [index, location] of (locationsRaw ?? []).entries()) {
      const parsed = parseLocation(location, baseDir, [...path, 'locations', index], issues);
      if (parsed !== undefined) locations.push(parsed);
    }
    const shipRaw =
      level.ship === undefined ? [] : issues.check(v.array(v.unknown(), 'must be an array of targets, e.g. [{ "azure": { "container": "archive" } }]'), level.ship, [...path, 'ship']);
    const ship: TargetConfig[] = [];
    for (const [index, target] of (shipRaw ?? []).entries()) {
      const parsed = parseTarget(target, baseDir, [...path, 'ship', index], issues);
      if (parsed !== undefined) ship.push(parsed);
    }
    const alertLagMs = level.alertLagMs === undefined ? undefined : issues.check(positiveInteger, level.alertLagMs, [...path, 'alertLagMs']);
    const ack = parseAck(level.ack, shipRaw?.length ?? 0, [...path, 'ack'], issues);
    const index = level.index === undefined ? undefined : issues.check(pathStringSchema, level.index, [...path, 'index']);
    if (
      fsyncText === undefined ||
      locationsRaw === undefined ||
      locations.length !== locationsRaw.length ||
      shipRaw === undefined ||
      ship.length !== shipRaw.length ||
      ack === undefined ||
      (level.alertLagMs !== undefined && alertLagMs === undefined) ||
      (level.index !== undefined && index === undefined)
    ) {
      continue;
    }
    out.set(name, {
      level: {
        name,
        locations,
        fsync: parseFsyncPolicy(fsyncText),
        fsyncExplicit: level.fsync !== undefined,
        ship,
        alertLagMs,
        ack,
        index: index === undefined ? undefined : resolve(baseDir, index),
      },
    });
  }
  if (Object.keys(levels).length === 0) issues.add(['levels'], 'define at least one level, e.g. { "standard": { "locations": [{ "file": "./data/{partition}" }] } }');
  return { valid: out, names: new Set(Object.keys(levels)) };
}

function parseLocation(input: unknown, baseDir: string, path: Path, issues: Issues): LocationConfig | undefined {
  const shapes = '{ "file": "./data/{partition}" }, { "memory": {} }, { "lmdb": "./lmdb/{partition}" }, { "azure": { ... } } or { "<kind>": { ... } }';
  const location = issues.check(objectSchema(`one of ${shapes}`), input, path);
  if (location === undefined) return undefined;
  const keys = Object.keys(location);
  const kind = keys[0];
  if (keys.length !== 1 || !KIND_PATTERN.test(kind)) {
    issues.add(path, `a location has exactly one key, its kind: ${shapes} (got ${keys.length === 0 ? 'no key' : keys.map((k) => `"${k}"`).join(', ')})`);
    return undefined;
  }
  const value = location[kind];
  const at = [...path, kind];
  switch (kind) {
    case 'file': {
      if (typeof value === 'string') {
        const directory = issues.check(pathStringSchema, value, at);
        return directory === undefined ? undefined : { kind: 'file', directory: resolve(baseDir, directory) };
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        issues.add(at, 'must be a path, or { "directory": "...", "segmentBytes": 67108864, "preallocate": "sparse" }');
        return undefined;
      }
      // An object: each of its keys checked on its own, so a bad one is named by its path.
      issues.unknownKeys(value as Record<string, unknown>, ['directory', 'segmentBytes', 'preallocate'], at);
      const file = issues.check(fileObjectSchema, value, at);
      if (file === undefined) return undefined;
      return { kind: 'file', directory: resolve(baseDir, file.directory), segmentBytes: file.segmentBytes, preallocate: file.preallocate };
    }
    case 'memory': {
      const memory = issues.check(objectSchema('{} (memory storage takes no options)'), value, at);
      if (memory === undefined) return undefined;
      issues.unknownKeys(memory, [], at);
      return { kind: 'memory' };
    }
    default: {
      const pathKey = PATH_KEYS[kind];
      let options: Record<string, unknown> | undefined;
      if (typeof value === 'string' && pathKey !== undefined) {
        options = { [pathKey]: value };
      } else {
        options = issues.check(objectSchema(pathKey === undefined ? "the backend's options" : "a path, or the backend's options"), value, at);
      }
      if (options === undefined) return undefined;
      if (pathKey !== undefined && typeof options[pathKey] === 'string') {
        options = { ...options, [pathKey]: resolve(baseDir, options[pathKey] as string) };
      }
      if (kind === 'azure' && options.prefix === undefined) options = { ...options, prefix: '{partition}' };
      return { kind, options };
    }
  }
}

function parseTarget(input: unknown, baseDir: string, path: Path, issues: Issues): TargetConfig | undefined {
  // A target is written and opened like a location (same kinds, same factories).
  return parseLocation(input, baseDir, path, issues);
}

function parseAck(input: unknown, targets: number, path: Path, issues: Issues): AckConfig | undefined {
  if (input === undefined || input === 'local') return { mode: 'local' };
  const shape = '"local", or { "quorum": <n> } (acknowledge once n of the level\'s "ship" targets hold the commit)';
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    issues.add(path, `must be ${shape}`);
    return undefined;
  }
  const ack = input as Record<string, unknown>;
  issues.unknownKeys(ack, ['quorum'], path);
  if (!('quorum' in ack)) {
    issues.add(path, `must be ${shape}`);
    return undefined;
  }
  const quorum = issues.check(positiveInteger, ack.quorum, [...path, 'quorum']);
  if (quorum === undefined) return undefined;
  if (quorum > targets) {
    issues.add([...path, 'quorum'], `is ${quorum} but the level ships to ${targets} target(s): list at least ${quorum} in "ship", or lower the quorum`);
    return undefined;
  }
  return { mode: 'quorum', quorum };
}

function parseIntegers(
  input: unknown,
  ranges: Readonly<Record<string, readonly [number, number]>>,
  path: Path,
  issues: Issues,
): Record<string, number> {
  if (input === undefined) return {};
  const section = issues.check(objectSchema(`{ ${Object.keys(ranges).map((k) => `"${k}": <integer>`).join(', ')} }`), input, path);
  if (section === undefined) return {};
  issues.unknownKeys(section, Object.keys(ranges), path);
  const out: Record<string, number> = {};
  for (const [key, [min, max]] of Object.entries(ranges)) {
    if (section[key] === undefined) continue;
    const value = issues.check(
      v.pipe(v.number('must be a number'), v.integer('must be an integer'), v.minValue(min, `must be at least ${min}`), v.maxValue(max, `must be at most ${max}`)),
      section[key],
      [...path, key],
    );
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function parseLimits(input: unknown, issues: Issues): LimitsConfig {
  const empty: LimitsConfig = { broker: {}, node: {}, client: {} };
  if (input === undefined) return empty;
  const limits = issues.check(objectSchema('{ "broker": { ... }, "node": { ... }, "client": { ... } }'), input, ['limits']);
  if (limits === undefined) return empty;
  issues.unknownKeys(limits, ['broker', 'node', 'client'], ['limits']);
  return {
    broker: parseIntegers(limits.broker, BROKER_LIMIT_KEYS, ['limits', 'broker'], issues),
    node: parseIntegers(limits.node, NODE_LIMIT_KEYS, ['limits', 'node'], issues),
    client: parseIntegers(limits.client, CLIENT_LIMIT_KEYS, ['limits', 'client'], issues),
  };
}

/** Partition → level name, for every partition whose name is valid (references are checked, not dropped). */
function parsePartitions(input: unknown, levels: ParsedLevels | undefined, issues: Issues): Map<string, string> | undefined {
  const partitions = issues.check(objectSchema('partition name → level name'), input, ['partitions']);
  if (partitions === undefined) return undefined;
  const out = new Map<string, string>();
  for (const [name, raw] of Object.entries(partitions)) {
    const path = ['partitions', name];
    const validName = PARTITION_NAME_PATTERN.test(name);
    if (!validName) issues.add(path, 'a partition name is 1-100 letters, digits, ".", "_" or "-", starting with a letter or digit');
    const level = issues.check(levelNameSchema, raw, path);
    if (level !== undefined && levels !== undefined && !levels.names.has(level)) {
      const known = [...levels.names].map((k) => `"${k}"`).join(', ');
      issues.add(path, `level "${level}" is not defined in "levels" (defined: ${known || 'none'})`);
    }
    if (validName) out.set(name, level ?? '');
  }
  if (Object.keys(partitions).length === 0) issues.add(['partitions'], 'define at least one partition, e.g. { "bank-1": "standard" }');
  return out;
}

function parseRouting(input: unknown, partitions: Map<string, string> | undefined, issues: Issues): RoutingConfig | undefined {
  const routing = issues.check(objectSchema('{ "hash": [...] } and/or { "prefixes": { ... } }'), input, ['routing']);
  if (routing === undefined) return undefined;
  issues.unknownKeys(routing, ['hash', 'prefixes'], ['routing']);
  if (routing.hash === undefined && routing.prefixes === undefined) {
    issues.add(['routing'], 'give "hash" (a partition list streams are hashed over) and/or "prefixes" (stream-id prefix → partition)');
    return undefined;
  }
  const hash = routing.hash === undefined ? undefined : issues.check(nameListSchema('partitions'), routing.hash, ['routing', 'hash']);
  const prefixes =
    routing.prefixes === undefined
      ? undefined
      : issues.check(v.record(v.string(), v.string('must be a partition name'), 'must be an object: stream-id prefix → partition'), routing.prefixes, ['routing', 'prefixes']);
  const known = (name: string, path: Path): void => {
    if (partitions !== undefined && !partitions.has(name)) issues.add(path, `partition "${name}" is not defined in "partitions"`);
  };
  hash?.forEach((name, index) => known(name, ['routing', 'hash', index]));
  for (const [prefix, name] of Object.entries(prefixes ?? {})) known(name, ['routing', 'prefixes', prefix]);
  if ((routing.hash !== undefined && hash === undefined) || (routing.prefixes !== undefined && prefixes === undefined)) return undefined;
  return { hash, prefixes };
}

function parseNodes(
  input: unknown,
  partitions: Map<string, string> | undefined,
  issues: Issues,
): Record<string, NodeHostConfig> | undefined {
  const nodes = issues.check(objectSchema('node name → { "partitions": [...] }'), input, ['nodes']);
  if (nodes === undefined) return undefined;
  const out: Record<string, NodeHostConfig> = {};
  const hostOf = new Map<string, string>();
  for (const [name, raw] of Object.entries(nodes)) {
    const path = ['nodes', name];
    const node = issues.check(objectSchema('{ "partitions": ["..."] }'), raw, path);
    if (node === undefined) continue;
    issues.unknownKeys(node, ['partitions'], path);
    const list = issues.check(nameListSchema('partitions'), node.partitions, [...path, 'partitions']);
    if (list === undefined) continue;
    list.forEach((partition, index) => {
      const at = [...path, 'partitions', index];
      if (partitions !== undefined && !partitions.has(partition)) issues.add(at, `partition "${partition}" is not defined in "partitions"`);
      const other = hostOf.get(partition);
      if (other !== undefined) {
        issues.add(at, `partition "${partition}" is also hosted by node "${other}": a partition has one writer, so one node (fail-over replicas are not supported yet)`);
      }
      hostOf.set(partition, name);
    });
    out[name] = { partitions: list };
  }
  if (Object.keys(out).length === 0 && Object.keys(nodes).length === 0) {
    issues.add(['nodes'], 'list at least one node, or leave "nodes" out so every node hosts every partition');
  }
  for (const partition of partitions?.keys() ?? []) {
    if (!hostOf.has(partition) && Object.keys(nodes).length > 0) {
      issues.add(['nodes'], `partition "${partition}" is hosted by no node: add it to one node's "partitions"`);
    }
  }
  return out;
}

function resolvePartitions(partitionLevels: Map<string, string>, levels: Map<string, ParsedLevel>, issues: Issues): Record<string, PartitionConfig> {
  const out: Record<string, PartitionConfig> = {};
  const directories = new Map<string, string>();
  for (const [name, levelName] of partitionLevels) {
    const parsed = levels.get(levelName);
    if (parsed === undefined) continue;
    const { level } = parsed;
    const locations = level.locations.map((location) => substitute(location, name));
    const ship = level.ship.map((target) => substitute(target, name));
    for (const location of [...locations, ...ship]) {
      if (!isFileLocation(location)) continue;
      const other = directories.get(location.directory);
      if (other !== undefined) {
        issues.add(
          ['partitions', name],
          other === name
            ? `partition "${name}" would use the directory ${location.directory} twice (level "${levelName}"): give each location and target its own folder`
            : `partition "${name}" would share the directory ${location.directory} with "${other}": put "{partition}" in level "${levelName}"'s file path`,
        );
      }
      directories.set(location.directory, name);
    }
    const indexDirectory = level.index !== undefined ? level.index.split('{partition}').join(name) : besideFirstLocation(locations[0]);
    // A derived folder collides only when the locations do, which is reported above.
    if (level.index !== undefined && indexDirectory !== undefined) {
      const other = directories.get(indexDirectory);
      if (other !== undefined) {
        issues.add(
          ['levels', levelName, 'index'],
          `partition "${name}" would keep its index in ${indexDirectory}, already used by ${other === name ? 'one of its locations' : `partition "${other}"`}: put "{partition}" in the index path and give it its own folder`,
        );
      }
      directories.set(indexDirectory, name);
    }
    out[name] = {
      name,
      level: levelName,
      service: partitionServiceName(name),
      locations,
      location: locations[0],
      fsync: level.fsync,
      fsyncExplicit: level.fsyncExplicit,
      ship,
      alertLagMs: level.alertLagMs,
      ack: level.ack,
      indexDirectory,
    };
  }
  return out;
}

/** `<directory>.index` for a first location that is a local folder, else undefined. */
function besideFirstLocation(location: LocationConfig | undefined): string | undefined {
  if (location === undefined) return undefined;
  if (isFileLocation(location)) return `${location.directory}.index`;
  const directory = 'options' in location ? (location.options as Record<string, unknown>).directory : undefined;
  return typeof directory === 'string' && directory.length > 0 ? `${directory}.index` : undefined;
}

/** The location of one partition: `{partition}` replaced in every string. */
function substitute(location: LocationConfig, partition: string): LocationConfig {
  if (isFileLocation(location)) return { ...location, directory: location.directory.split('{partition}').join(partition) };
  if (!('options' in location)) return location;
  return { ...location, options: substituteDeep(location.options, partition) as Record<string, unknown> };
}

function substituteDeep(value: unknown, partition: string): unknown {
  if (typeof value === 'string') return value.split('{partition}').join(partition);
  if (Array.isArray(value)) return value.map((item) => substituteDeep(item, partition));
  if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, substituteDeep(item, partition)]));
  }
  return value;
}

/** `levels.fast.locations[0].file`, `partitions["a b"]`: dots for plain keys, brackets otherwise. */
function formatPath(path: Path): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(key)}]`;
  }
  return out;
}
