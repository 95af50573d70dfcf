import { createMemoryStorage, createMirroredStorage, type FsyncPolicy, type MirrorRepair, type PartitionStorage } from '@sluice/store';
import { isFileLocation, localFolderOf, type LocationConfig, type PartitionConfig } from '@sluice/config';

/** What a location factory is told about the partition it opens storage for. */
export interface LocationContext {
  /** The partition's name. */
  readonly partition: string;
  /** The partition's fsync policy (its reliability level's). */
  readonly fsync: FsyncPolicy;
  /** Whether the level wrote `fsync` explicitly (otherwise a backend may keep its own default). */
  readonly fsyncExplicit: boolean;
  /** Aborts opening (the node is shutting down while it starts). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Creates a partition's storage for one location kind. The location is the config's, with
 * `{partition}` substituted and paths absolute (`@sluice/config`'s `LocationConfig`).
 */
export type LocationFactory = (location: LocationConfig, context: LocationContext) => PartitionStorage;

/**
 * Location kind → factory: how a node turns the config's locations into storage. The
 * application (or the `sluice` command) registers the backends it installed, so the node
 * imports no backend itself; `memory` is always there.
 */
export type LocationFactories = Readonly<Record<string, LocationFactory>>;

/** The backends the node knows how to load, by kind: the package and the factory it exports. */
const KNOWN_BACKENDS = {
  file: { packageName: '@sluice/store-file', factoryName: 'createFileStorage' },
  lmdb: { packageName: '@sluice/store-lmdb', factoryName: 'createLmdbStorage' },
  azure: { packageName: '@sluice/store-azure', factoryName: 'createAzureStorage' },
} as const;

/** A location kind whose backend package the node can import for you. */
export type KnownLocationKind = keyof typeof KNOWN_BACKENDS;

/** The `memory` factory every node has. */
export const memoryLocation: LocationFactory = () => createMemoryStorage();

/**
 * The factory for one of Sluice's own backends from its factory function (no import by the
 * node). `file` gets the fsync policy and segment size; `lmdb` and `azure` get their options
 * as written, plus `fsync` when the level set it.
 *
 * @example
 * import { createFileStorage } from '@sluice/store-file';
 * await startNode({ config, locations: { file: locationFactory('file', createFileStorage) } });
 */
export function locationFactory(kind: KnownLocationKind, create: (options: never) => PartitionStorage): LocationFactory {
  const make = create as (options: Record<string, unknown>) => PartitionStorage;
  if (kind === 'file') {
    return (location, context) => {
      if (!isFileLocation(location)) throw new TypeError(`[sluice/node] the file factory got a "${location.kind}" location`);
      const file = location;
      return make({
        directory: file.directory,
        // Recorded in segment headers by store-file's format v2 (ignored by v1).
        partition: context.partition,
        fsync: context.fsync,
        ...(file.segmentBytes === undefined ? {} : { segmentBytes: file.segmentBytes }),
        ...(file.preallocate === undefined ? {} : { preallocate: file.preallocate }),
        ...(context.signal === undefined ? {} : { signal: context.signal }),
      });
    };
  }
  return (location, context) => {
    const options = 'options' in location ? location.options : {};
    return make(context.fsyncExplicit ? { ...options, fsync: context.fsync } : { ...options });
  };
}

/** A location kind named by the config that no factory serves. */
export class UnregisteredLocationError extends Error {
  override readonly name = 'UnregisteredLocationError';
  readonly code = 'SLUICE_NODE_UNREGISTERED_LOCATION';
  constructor(
    readonly kind: string,
    readonly partitions: readonly string[],
    readonly registered: readonly string[],
    why?: string,
  ) {
    const known = KNOWN_BACKENDS[kind as KnownLocationKind];
    const advice =
      known === undefined
        ? `pass a factory for it in startNode({ locations: { "${kind}": ... } })`
        : `install ${known.packageName} next to @sluice/node (\`npm install ${known.packageName}\`), or pass locations: { ${kind}: locationFactory('${kind}', ${known.factoryName}) }`;
    super(
      `[sluice/node] partition(s) ${partitions.map((p) => `"${p}"`).join(', ')} use "${kind}" locations, ` +
        `but no factory is registered for "${kind}" (registered: ${registered.join(', ')})${why === undefined ? '' : `; ${why}`}: ${advice}`,
    );
  }
}

/** Every location kind a partition uses: its locations' and its ship targets'. */
function kindsOf(partition: PartitionConfig): string[] {
  return [...new Set([...partition.locations, ...partition.ship].map((location) => location.kind))];
}

/**
 * Imports the backend packages for the location kinds `partitions` use (locations and ship
 * targets) and that `locations`
 * does not already serve: `@sluice/store-file`, `-lmdb` and `-azure` are optional peer
 * dependencies of this package, so an application installs only those it uses. Rejects with
 * {@link UnregisteredLocationError} for a kind nobody serves (or whose package is missing).
 */
export async function resolveLocationFactories(
  partitions: readonly PartitionConfig[],
  locations: LocationFactories = {},
  importPackage: (name: string) => Promise<unknown> = (name) => import(name),
): Promise<LocationFactories> {
  const out: Record<string, LocationFactory> = { memory: memoryLocation, ...locations };
  const byKind = new Map<string, string[]>();
  for (const partition of partitions) {
    for (const kind of kindsOf(partition)) {
      const list = byKind.get(kind) ?? [];
      list.push(partition.name);
      byKind.set(kind, list);
    }
  }
  for (const [kind, names] of byKind) {
    if (out[kind] !== undefined) continue;
    const known = KNOWN_BACKENDS[kind as KnownLocationKind];
    if (known === undefined) throw new UnregisteredLocationError(kind, names, Object.keys(out));
    let module: unknown;
    try {
      module = await importPackage(known.packageName);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException)?.code;
      const missing = code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
      throw new UnregisteredLocationError(kind, names, Object.keys(out), missing ? `${known.packageName} is not installed` : `${known.packageName} could not be loaded (${(error as Error)?.message ?? String(error)})`);
    }
    const factory = (module as Record<string, unknown> | null)?.[known.factoryName];
    if (typeof factory !== 'function') {
      throw new UnregisteredLocationError(kind, names, Object.keys(out), `${known.packageName} does not export ${known.factoryName}()`);
    }
    out[kind] = locationFactory(kind as KnownLocationKind, factory as (options: never) => PartitionStorage);
  }
  return out;
}

/** Options of {@link createPartitionStorage}. */
export interface CreatePartitionStorageOptions {
  /** Aborts opening (the node is shutting down while it starts). */
  readonly signal?: AbortSignal | undefined;
  /** Called for each repair a mirror makes (a level with several locations). */
  readonly onRepair?: ((repair: MirrorRepair) => void) | undefined;
}

/** A label for a location in messages: its kind and folder, e.g. `file /disk1/payments`. */
export function locationLabel(location: LocationConfig, index: number): string {
  const folder = localFolderOf(location);
  return folder === undefined ? `${location.kind} #${index}` : `${location.kind} ${folder}`;
}

/** One location's storage from the registered factories (also used for ship targets). */
export function createLocationStorage(
  partition: PartitionConfig,
  location: LocationConfig,
  locations: LocationFactories,
  signal?: AbortSignal,
): PartitionStorage {
  const factory = locations[location.kind];
  if (factory === undefined) throw new UnregisteredLocationError(location.kind, [partition.name], Object.keys(locations));
  return factory(location, { partition: partition.name, fsync: partition.fsync, fsyncExplicit: partition.fsyncExplicit, signal });
}

/**
 * Creates a partition's storage from its locations with the registered factories: one
 * location is that backend's storage; several are one `createMirroredStorage` (every copy
 * synced before an acknowledgement, reads from the first healthy one, repairs at open).
 */
export function createPartitionStorage(
  partition: PartitionConfig,
  locations: LocationFactories,
  options: CreatePartitionStorageOptions | AbortSignal = {},
): PartitionStorage {
  const { signal, onRepair } = options instanceof AbortSignal ? { signal: options, onRepair: undefined } : options;
  const copies = partition.locations ?? [partition.location];
  if (copies.length === 1) return createLocationStorage(partition, copies[0], locations, signal);
  return createMirroredStorage({
    locations: copies.map((location, index) => ({
      storage: createLocationStorage(partition, location, locations, signal),
      label: locationLabel(location, index),
      directory: localFolderOf(location),
    })),
    level: partition.level,
    onRepair,
  });
}
