import { constants } from 'node:fs';
import { access, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ConfigError, type ConfigIssue } from './config-error.js';
import { isFileLocation, type LocationConfig, type SluiceConfig } from './sluice-config.js';

/** Where a location's data lives on this machine, spelled one way only. */
export interface CanonicalFolder {
  /** The real path: symbolic links resolved, relative spellings gone. */
  readonly realPath: string;
  /** `device:inode` when the folder exists (two bind mounts of one folder have the same). */
  readonly inode: string | undefined;
}

/**
 * The canonical identity of a local folder: the real path of its deepest existing ancestor
 * with the rest of the path appended (the folder may not exist yet), plus device and inode
 * when it exists. Two spellings of one folder (a symbolic link, a relative and an absolute
 * path, `..`) give the same identity.
 */
export async function canonicalFolder(path: string): Promise<CanonicalFolder> {
  let existing = path;
  const rest: string[] = [];
  for (;;) {
    try {
      const real = await realpath(existing);
      const realPath = rest.length === 0 ? real : join(real, ...rest.reverse());
      const info = rest.length === 0 ? await stat(real) : undefined;
      return { realPath, inode: info === undefined ? undefined : `${info.dev}:${info.ino}` };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
      const parent = dirname(existing);
      if (parent === existing) throw error;
      rest.push(basename(existing));
      existing = parent;
    }
  }
}

/** The local folder a location keeps its data in, when it has one (file and LMDB locations). */
export function localFolderOf(location: LocationConfig): string | undefined {
  if (isFileLocation(location)) return location.directory;
  const options = 'options' in location ? (location.options as Record<string, unknown>) : undefined;
  const directory = options?.directory;
  return typeof directory === 'string' ? directory : undefined;
}

/** The deepest folder of `path` that exists (the location may not be created yet). */
async function existingAncestor(path: string): Promise<string> {
  let current = path;
  for (;;) {
    try {
      await stat(current);
      return current;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
      const parent = dirname(current);
      if (parent === current) return current;
      current = parent;
    }
  }
}

/**
 * Checks the local folders of every partition's locations and file/LMDB `ship` targets:
 * no two partitions (nor two copies of one partition) keep their data in one folder, however
 * the folders are spelled (a symbolic link, a relative and an absolute path, a file and an
 * LMDB location on the same folder), and each folder is writable (or can be created: its
 * deepest existing ancestor is a writable directory). Rejects with {@link ConfigError} listing
 * every problem, each naming the partition, the location and the folder.
 * {@link loadSluiceConfig} runs it; call it yourself after `parseSluiceConfig`.
 */
export async function checkLocationFolders(config: SluiceConfig): Promise<void> {
  const byKey = new Map<string, string>();
  const issues: ConfigIssue[] = [];
  for (const [name, partition] of Object.entries(config.partitions)) {
    const copies = [
      ...partition.locations.map((location, index) => ({ location, where: `locations[${index}]` })),
      ...partition.ship.map((location, index) => ({ location, where: `ship[${index}]` })),
    ];
    for (const { location, where } of copies) {
      const folder = localFolderOf(location);
      if (folder === undefined) continue;
      const path = `levels.${partition.level}.${where}`;
      const writable = await writableProblem(folder);
      if (writable !== undefined) issues.push({ path, message: `partition "${name}" (${location.kind} at ${folder}): ${writable}` });
      const identity = await canonicalFolder(folder);
      const label = `${name} ${where}`;
      for (const key of [identity.realPath, identity.inode]) {
        if (key === undefined) continue;
        const other = byKey.get(key);
        if (other !== undefined && other !== label) {
          const otherName = other.split(' ')[0];
          issues.push({
            path: `partitions.${name}`,
            message:
              otherName === name
                ? `partition "${name}" (${location.kind} at ${folder}, ${where}) would keep two copies in one folder (${identity.realPath}, also ${other.split(' ')[1]}): give each location and target of level "${partition.level}" its own folder`
                : `partition "${name}" (${location.kind} at ${folder}) would keep its data in the same folder as "${otherName}" ` +
                  `(${identity.realPath}): give each partition its own folder, e.g. with "{partition}" in the level's path`,
          });
          break;
        }
        byKey.set(key, label);
      }
    }
  }
  if (issues.length > 0) throw new ConfigError(issues, config.source);
}

/** Why `folder` cannot be written, or undefined when it can (or can be created). */
async function writableProblem(folder: string): Promise<string | undefined> {
  const existing = await existingAncestor(folder);
  const info = await stat(existing);
  if (!info.isDirectory()) return `${existing} is a file, not a folder: choose another path`;
  try {
    await access(existing, constants.W_OK | constants.X_OK);
  } catch {
    return existing === folder
      ? `the folder is not writable by this user: fix its permissions or choose another path`
      : `the folder does not exist and ${existing} is not writable by this user, so it cannot be created: create it, fix its permissions or choose another path`;
  }
  return undefined;
}
