import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** A child-process script bundled from a TypeScript fixture. */
export interface BundledChild {
  /** Path of the bundled `.mjs`, for `spawn(process.execPath, [script, ...])`. */
  readonly script: string;
  dispose(): Promise<void>;
}

/**
 * Bundles `entry` (a fixture next to the test) once, so each child start is a plain `node`
 * start rather than a TypeScript compile. The bundle goes inside the workspace
 * (`node_modules/.cache`): the writer lock loads its native addon from node_modules at run
 * time, which a bundle in /tmp cannot find.
 */
export async function bundleChild(entry: URL, name: string): Promise<BundledChild> {
  const cache = fileURLToPath(new URL('../../../../node_modules/.cache/', import.meta.url));
  await mkdir(cache, { recursive: true });
  const directory = await mkdtemp(join(cache, `sluice-${name}-`));
  const script = join(directory, `${name}.mjs`);
  await build({
    entryPoints: [fileURLToPath(entry)],
    outfile: script,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['@sluice/source'],
    logLevel: 'silent',
  });
  return { script, dispose: () => rm(directory, { recursive: true, force: true }) };
}
