#!/usr/bin/env node
// The `sluice` command's launcher. It is committed (not built) so that `npm ci` links
// node_modules/.bin/sluice even before anything is built.
//
// - In a published package (no src/ beside dist/), it runs the built dist/bin.js.
// - In a clone of the repository (src/ present and tsx installed as a workspace dev
//   dependency), it runs the TypeScript sources with tsx and the "@sluice/source" export
//   condition, so workspace packages resolve to their sources too: no build needed, and never
//   a stale dist/.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const source = fileURLToPath(new URL('../src/bin.ts', import.meta.url));
const built = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

function tsxLoader() {
  try {
    return createRequire(import.meta.url).resolve('tsx');
  } catch {
    return undefined;
  }
}

const loader = existsSync(source) ? tsxLoader() : undefined;
if (loader !== undefined) {
  // A child process: export conditions and loaders are fixed when a process starts.
  const child = spawn(
    process.execPath,
    ['--conditions=@sluice/source', '--import', pathToFileURL(loader).href, source, ...process.argv.slice(2)],
    { stdio: 'inherit' },
  );
  const forward = (signal) => () => child.kill(signal);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, forward(signal));
  child.on('exit', (code, signal) => {
    process.exitCode = code ?? (signal === 'SIGINT' ? 130 : 1);
  });
} else if (existsSync(built)) {
  await import(pathToFileURL(built).href);
} else {
  process.stderr.write(
    '[sluice/cli] neither dist/bin.js nor a TypeScript runner is available: run `npm run build` at the repository root, ' +
      'or reinstall @sluice/cli\n',
  );
  process.exitCode = 1;
}
