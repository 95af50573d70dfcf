import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const packages = fileURLToPath(new URL('../../packages/', import.meta.url));

async function testSources(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const entry of entries) {
    if (entry.isFile() && entry.name.endsWith('.test.ts') && !entry.parentPath.includes('node_modules')) {
      out.push(await readFile(join(entry.parentPath, entry.name), 'utf8'));
    }
  }
  return out;
}

// Every storage backend must run the shared suite unchanged: a backend that silently skips
// it is the failure this guards against.
it('every packages/store-* backend runs the storage conformance suite', async () => {
  const backends = (await readdir(packages)).filter((name) => name.startsWith('store-') && name !== 'store-conformance');
  expect(backends.length).toBeGreaterThan(0);
  const missing: string[] = [];
  for (const name of backends) {
    const sources = await testSources(join(packages, name, 'src'));
    const runs = sources.some((s) => /describeStorageConformance\(\s*\{/.test(s) && !/\.(skip|todo)\(/.test(s));
    if (!runs) missing.push(name);
  }
  expect(missing, 'backends that do not call describeStorageConformance() from their tests').toEqual([]);
});
