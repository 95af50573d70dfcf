import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
let scratch: string;
const tarballs = new Map<string, string>();

/** Builds and packs a workspace package exactly as it would be published. */
async function pack(name: string): Promise<string> {
  const cached = tarballs.get(name);
  if (cached !== undefined) return cached;
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', scratch, '-w', name], { cwd: root });
  const [info] = JSON.parse(stdout.slice(stdout.indexOf('['))) as Array<{ filename: string }>;
  const path = join(scratch, info.filename);
  tarballs.set(name, path);
  return path;
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'sluice-pack-'));
  // Packages ship dist/: build what is packed (incremental, fast when already built).
  for (const pkg of ['store-file', 'store-lmdb', 'store-azure', 'majordomo', 'client', 'config', 'shipper', 'node']) await run('npx', ['tsc', '-b', `packages/${pkg}/tsconfig.lib.json`], { cwd: root });
}, 180_000);

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Installs tarballs into an empty folder and runs `script` there as an ES module. */
async function installAndRun(names: string[], script: string): Promise<string> {
  const app = await mkdtemp(join(scratch, 'app-'));
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  const files = await Promise.all(names.map(pack));
  // Registry packages (lmdb, the Azure SDK) come from npm's cache when `npm ci` already fetched them.
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', ...files], { cwd: app });
  await writeFile(join(app, 'main.js'), script);
  const { stdout } = await run(process.execPath, ['main.js'], { cwd: app });
  return stdout.trim();
}

it('@sluice/store + @sluice/store-file install and work alone, without zeromq, lmdb or the Azure SDK', { timeout: 180_000 }, async () => {
  const out = await installAndRun(
    ['@sluice/framing', '@sluice/store', '@sluice/store-file'],
    `
    import { openPartition } from '@sluice/store';
    import { createFileStorage } from '@sluice/store-file';
    import { mkdtempSync } from 'node:fs';
    import { createRequire } from 'node:module';
    const require = createRequire(import.meta.url);
    const absent = ['zeromq', 'lmdb', '@azure/storage-blob'].filter((m) => { try { require.resolve(m); return false; } catch { return true; } });
    const p = await openPartition({ storage: createFileStorage({ directory: mkdtempSync('data-') }) });
    const r = await p.append({ streamId: 's', events: [{ type: 'E', data: new TextEncoder().encode('hi') }] });
    let read = '';
    for await (const e of p.read()) read += new TextDecoder().decode(e.payload);
    await p.close();
    console.log(JSON.stringify({ absent, seq: r.lastSeq, read }));
    `,
  );
  expect(JSON.parse(out)).toEqual({ absent: ['zeromq', 'lmdb', '@azure/storage-blob'], seq: 1, read: 'hi' });
  const installed = await readdir(join(scratch));
  expect(installed.some((f) => f.startsWith('sluice-store-file-'))).toBe(true);
});

const absentCheck = (modules: string[]): string => `
    import { createRequire } from 'node:module';
    const require = createRequire(import.meta.url);
    const absent = ${JSON.stringify(modules)}.filter((m) => { try { require.resolve(m); return false; } catch { return true; } });`;

it('@sluice/store-lmdb installs with only lmdb beside the core, and works', { timeout: 180_000 }, async () => {
  const out = await installAndRun(
    ['@sluice/framing', '@sluice/store', '@sluice/store-lmdb'],
    `${absentCheck(['zeromq', '@azure/storage-blob', '@sluice/store-file'])}
    import { openPartition } from '@sluice/store';
    import { createLmdbStorage } from '@sluice/store-lmdb';
    import { mkdtempSync } from 'node:fs';
    const p = await openPartition({ storage: createLmdbStorage({ directory: mkdtempSync('lmdb-') }) });
    const r = await p.append({ streamId: 's', events: [{ type: 'E', data: new TextEncoder().encode('hi') }] });
    await p.close();
    console.log(JSON.stringify({ absent, seq: r.lastSeq, lmdb: typeof require.resolve('lmdb') }));
    `,
  );
  expect(JSON.parse(out)).toEqual({ absent: ['zeromq', '@azure/storage-blob', '@sluice/store-file'], seq: 1, lmdb: 'string' });
});

it('@sluice/store-azure installs with only the Azure SDK beside the core, and loads', { timeout: 180_000 }, async () => {
  const out = await installAndRun(
    ['@sluice/framing', '@sluice/store', '@sluice/store-azure'],
    `${absentCheck(['zeromq', 'lmdb', '@sluice/store-file'])}
    import { createAzureStorage } from '@sluice/store-azure';
    let message = '';
    try { createAzureStorage({ prefix: 'p' }); } catch (e) { message = e.message; }
    console.log(JSON.stringify({ absent, sdk: typeof require.resolve('@azure/storage-blob'), refusesMissingCredentials: /connectionString/.test(message) }));
    `,
  );
  expect(JSON.parse(out)).toEqual({ absent: ['zeromq', 'lmdb', '@sluice/store-file'], sdk: 'string', refusesMissingCredentials: true });
});

it('@sluice/client installs without any storage backend or config parser, and talks to a broker', { timeout: 180_000 }, async () => {
  const out = await installAndRun(
    ['@sluice/framing', '@sluice/store', '@sluice/majordomo', '@sluice/client'],
    `${absentCheck(['@sluice/store-file', '@sluice/store-lmdb', '@sluice/store-azure', 'lmdb', '@azure/storage-blob', 'valibot', '@sluice/config', '@sluice/node'])}
    import { createBroker } from '@sluice/majordomo';
    import { createStoreClient } from '@sluice/client';
    const broker = await createBroker({ endpoint: 'tcp://127.0.0.1:*' });
    const client = createStoreClient({ brokers: [broker.endpoint], routing: { hash: ['p1'] }, timeoutMs: 300, retriesMax: 0 });
    let code = '';
    try { await client.head('p1'); } catch (e) { code = e.code; }
    await client.close();
    await broker.close();
    console.log(JSON.stringify({ absent, code }));
    `,
  );
  // No node serves p1: the client reports the partition unavailable (after its timeout), typed.
  expect(JSON.parse(out)).toEqual({
    absent: ['@sluice/store-file', '@sluice/store-lmdb', '@sluice/store-azure', 'lmdb', '@azure/storage-blob', 'valibot', '@sluice/config', '@sluice/node'],
    code: 'SLUICE_BROKER_PARTITION_UNAVAILABLE',
  });
});

it('@sluice/node installs with only the file backend it uses, loads it as an optional peer, and serves a client', { timeout: 180_000 }, async () => {
  const out = await installAndRun(
    ['@sluice/framing', '@sluice/store', '@sluice/majordomo', '@sluice/client', '@sluice/config', '@sluice/shipper', '@sluice/node', '@sluice/store-file'],
    `${absentCheck(['@sluice/store-lmdb', '@sluice/store-azure', 'lmdb', '@azure/storage-blob'])}
    import { mkdtempSync } from 'node:fs';
    import { createBroker } from '@sluice/majordomo';
    import { createStoreClientFromConfig } from '@sluice/client';
    import { parseSluiceConfig } from '@sluice/config';
    import { startNode } from '@sluice/node';
    const broker = await createBroker({ endpoint: 'tcp://127.0.0.1:*' });
    const config = parseSluiceConfig({
      brokers: [broker.endpoint],
      levels: { standard: { locations: [{ file: './data/{partition}' }], fsync: 'none' } },
      partitions: { p1: 'standard' },
      routing: { hash: ['p1'] },
    }, mkdtempSync('cluster-'));
    const node = await startNode({ config, nodeName: 'n1', concurrency: 1 });
    const client = createStoreClientFromConfig(config, { timeoutMs: 10000 });
    const r = await client.append({ streamId: 's', events: [{ type: 'E', data: new TextEncoder().encode('hi') }] });
    await client.close();
    await node.close();
    await broker.close();
    console.log(JSON.stringify({ absent, seq: r.lastSeq }));
    `,
  );
  expect(JSON.parse(out)).toEqual({ absent: ['@sluice/store-lmdb', '@sluice/store-azure', 'lmdb', '@azure/storage-blob'], seq: 1 });
});
