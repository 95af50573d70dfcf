import { mkdir, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** Bundles a child-process fixture once so each child is a plain `node` start. Returns the script and its folder. */
export async function bundleFixture(entry: URL): Promise<{ script: string; directory: string }> {
  // Inside the workspace: the writer lock loads its native addon from node_modules at run time.
  const cache = fileURLToPath(new URL('../../../node_modules/.cache/', import.meta.url));
  await mkdir(cache, { recursive: true });
  const directory = await mkdtemp(join(cache, 'sluice-handlers-child-'));
  const script = join(directory, 'child.mjs');
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
  return { script, directory };
}
