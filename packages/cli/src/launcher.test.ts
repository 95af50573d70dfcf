import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../../', import.meta.url));
const cliDir = fileURLToPath(new URL('../', import.meta.url));

// `npm ci` links node_modules/.bin/sluice only if the bin target exists at install time, so
// it must be a committed file, not something under dist/ (issue 10, item 2).
it('the "sluice" bin is a committed launcher outside dist/, so `npm ci` links it in a fresh clone', async () => {
  const pkg = JSON.parse(await readFile(`${cliDir}package.json`, 'utf8')) as { bin: Record<string, string>; files: string[] };
  const target = pkg.bin.sluice;
  expect(target.replace(/^\.\//, '')).not.toMatch(/^dist\//);
  const { stdout } = await run('git', ['ls-files', '--error-unmatch', target], { cwd: cliDir });
  expect(stdout.trim()).toBe(target.replace(/^\.\//, ''));
  expect(pkg.files).toContain(target.replace(/^\.\//, '').split('/')[0]);
});

// The generous timeout covers npx and tsx starting on a loaded 2-core machine.
it('`npx sluice --help` works from the repository root, running the sources without a build', { timeout: 60_000 }, async () => {
  const { stdout } = await run('npx', ['--no-install', 'sluice', '--help'], { cwd: root });
  expect(stdout).toContain('Usage: sluice [options] [command]');
  expect(stdout).toMatch(/broker \[options\]/);
  const version = await run('npx', ['--no-install', 'sluice', '--version'], { cwd: root });
  expect(version.stdout.trim()).toBe('0.1.0');
});

it('the launcher passes the exit code through', { timeout: 60_000 }, async () => {
  const failed = await run(process.execPath, [`${cliDir}bin/sluice.js`, 'read', '--path', '/nonexistent/sluice-partition'], { cwd: root }).then(
    () => undefined,
    (error: { code?: number; stderr?: string }) => error,
  );
  expect(failed?.code).toBeGreaterThan(0);
  expect(failed?.stderr).toMatch(/sluice/);
});
