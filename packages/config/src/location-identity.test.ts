import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { canonicalFolder } from './location-identity.js';
import { loadSluiceConfig } from './sluice-config.js';

const directories: string[] = [];
afterEach(async () => {
  for (const directory of directories.splice(0)) await rm(directory, { recursive: true, force: true });
});

async function configIn(levels: Record<string, unknown>, partitions: Record<string, string>, setup?: (dir: string) => Promise<void>): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'sluice-config-folders-'));
  directories.push(directory);
  await setup?.(directory);
  const path = join(directory, 'sluice.json');
  await writeFile(path, JSON.stringify({ brokers: ['tcp://127.0.0.1:5555'], levels, partitions, routing: { hash: Object.keys(partitions) } }));
  return path;
}

describe('one folder per partition, however it is spelled (issue 13)', () => {
  it('refuses two partitions on one folder through a symbolic link', async () => {
    const path = await configIn(
      { a: { locations: [{ file: './data/real' }] }, b: { locations: [{ file: './data/link' }] } },
      { one: 'a', two: 'b' },
      async (dir) => {
        await mkdir(join(dir, 'data', 'real'), { recursive: true });
        await symlink(join(dir, 'data', 'real'), join(dir, 'data', 'link'));
      },
    );
    const error = await loadSluiceConfig(path).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'SLUICE_CONFIG' });
    expect((error as Error).message).toMatch(/partitions\.two: partition "two" \(file at .*data\/link\) would keep its data in the same folder as "one"/);
  });

  it('refuses a relative and an absolute spelling of one folder that does not exist yet', async () => {
    let absolute = '';
    const path = await configIn({}, {}, async (dir) => {
      absolute = join(dir, 'data', 'x');
    });
    await writeFile(
      path,
      JSON.stringify({
        brokers: ['tcp://127.0.0.1:5555'],
        levels: { a: { locations: [{ file: './data/x' }] }, b: { locations: [{ file: `${absolute}/../x/` }] } },
        partitions: { one: 'a', two: 'b' },
        routing: { hash: ['one', 'two'] },
      }),
    );
    // Caught already by the parse (paths are made absolute and normalised there).
    await expect(loadSluiceConfig(path)).rejects.toThrow(/partition "two" would share the directory .*data\/x with "one"/);
  });

  it('refuses a file and an LMDB location on one folder', async () => {
    const path = await configIn({ a: { locations: [{ file: './shared' }] }, b: { locations: [{ lmdb: './shared' }] } }, { one: 'a', two: 'b' });
    await expect(loadSluiceConfig(path)).rejects.toThrow(/partition "two" \(lmdb at .*shared\) would keep its data in the same folder as "one"/);
  });

  it('accepts one folder per partition', async () => {
    const path = await configIn({ a: { locations: [{ file: './data/{partition}' }] } }, { one: 'a', two: 'a' });
    expect(Object.keys((await loadSluiceConfig(path)).partitions)).toEqual(['one', 'two']);
  });

  it('gives one canonical folder for every spelling', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-canonical-'));
    directories.push(dir);
    await mkdir(join(dir, 'a'));
    await symlink(join(dir, 'a'), join(dir, 'l'));
    const [viaLink, direct, dotted, missing] = await Promise.all([
      canonicalFolder(join(dir, 'l')),
      canonicalFolder(join(dir, 'a')),
      canonicalFolder(join(dir, 'a', '..', 'a')),
      canonicalFolder(join(dir, 'l', 'new', 'deeper')),
    ]);
    expect(viaLink).toEqual(direct);
    expect(dotted).toEqual(direct);
    expect(direct.inode).toMatch(/^\d+:\d+$/);
    expect(missing).toEqual({ realPath: join(direct.realPath, 'new', 'deeper'), inode: undefined });
  });
});

describe('every location and target of a level is checked (issue 11)', () => {
  it('refuses two copies of one partition in one folder through a symbolic link', async () => {
    const path = await configIn(
      { mirrored: { locations: [{ file: './disk1/{partition}' }, { lmdb: './link/{partition}' }] } },
      { payments: 'mirrored' },
      async (dir) => {
        await mkdir(join(dir, 'disk1'), { recursive: true });
        await symlink(join(dir, 'disk1'), join(dir, 'link'));
      },
    );
    const error = await loadSluiceConfig(path).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/partitions\.payments: partition "payments" \(lmdb at .*link\/payments, locations\[1\]\) would keep two copies in one folder .*also locations\[0\]/);
  });

  it('refuses a second location of another partition on the first one\'s folder', async () => {
    const path = await configIn(
      { a: { locations: [{ file: './d/one' }] }, b: { locations: [{ memory: {} }, { lmdb: './d/./one' }] } },
      { one: 'a', two: 'b' },
    );
    await expect(loadSluiceConfig(path)).rejects.toThrow(/partitions\.two: partition "two" \(lmdb at .*\) would keep its data in the same folder as "one"/);
  });

  it('reports every location that cannot be written, with its path in the config', async () => {
    const path = await configIn(
      { a: { locations: [{ file: './blocker/{partition}' }, { lmdb: './ok/{partition}' }], ship: [{ file: './blocker2/{partition}' }] } },
      { one: 'a' },
      async (dir) => {
        await writeFile(join(dir, 'blocker'), 'not a folder');
        await writeFile(join(dir, 'blocker2'), 'not a folder');
      },
    );
    const error = await loadSluiceConfig(path).catch((e: unknown) => e);
    const issues = (error as { issues: { path: string; message: string }[] }).issues.map((i) => `${i.path}: ${i.message}`);
    expect(issues).toEqual([
      expect.stringMatching(/^levels\.a\.locations\[0\]: partition "one" \(file at .*blocker\/one\): .*blocker is a file, not a folder/),
      expect.stringMatching(/^levels\.a\.ship\[0\]: partition "one" \(file at .*blocker2\/one\): .*blocker2 is a file, not a folder/),
    ]);
  });
});
