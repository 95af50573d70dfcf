import { realpath, stat } from 'node:fs/promises';
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

/**
 * Checks that no two partitions keep their data in one folder, however the folders are
 * spelled (a symbolic link, a relative and an absolute path, a file and an LMDB location on
 * the same folder). Rejects with {@link ConfigError} naming both partitions and the folder.
 * {@link loadSluiceConfig} runs it; call it yourself after `parseSluiceConfig`.
 */
export async function checkLocationFolders(config: SluiceConfig): Promise<void> {
  const byKey = new Map<string, string>();
  const issues: ConfigIssue[] = [];
  for (const [name, partition] of Object.entries(config.partitions)) {
    const folder = localFolderOf(partition.location);
    if (folder === undefined) continue;
    const identity = await canonicalFolder(folder);
    for (const key of [identity.realPath, identity.inode]) {
      if (key === undefined) continue;
      const other = byKey.get(key);
      if (other !== undefined && other !== name) {
        issues.push({
          path: `partitions.${name}`,
          message:
            `partition "${name}" (${partition.location.kind} at ${folder}) would keep its data in the same folder as "${other}" ` +
            `(${identity.realPath}): give each partition its own folder, e.g. with "{partition}" in the level's path`,
        });
        break;
      }
      byKey.set(key, name);
    }
  }
  if (issues.length > 0) throw new ConfigError(issues, config.source);
}
