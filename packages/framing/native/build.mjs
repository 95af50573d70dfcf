#!/usr/bin/env node
/**
 * Compiles native/crc32c.c into build/sluice_crc32c.node: the CRC-32C of many frames in one call
 * (see the C file). Optional: without a C compiler or Node's headers the package uses its
 * JavaScript CRC-32C, so this script never fails an install; it says what it did on stderr.
 *
 *   node native/build.mjs          build unless the addon is already there and newer than its source
 *   node native/build.mjs --force  rebuild
 *
 * Environment: CC (the compiler and any flags, default `cc`), SLUICE_NODE_INCLUDE (a directory holding
 * node_api.h, default Node's own include/node), SLUICE_CRC32C=js (skip the build).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'native', 'crc32c.c');
const target = join(root, 'build', 'sluice_crc32c.node');
const say = (message) => process.stderr.write(`[sluice/framing] ${message}\n`);

/** True when the addon is there and newer than this script and its source (same machine: build/ is not published). */
function upToDate() {
  if (!existsSync(target)) return false;
  const built = statSync(target).mtimeMs;
  return [source, fileURLToPath(import.meta.url)].every((f) => statSync(f).mtimeMs <= built);
}

function build() {
  if (process.env.SLUICE_CRC32C === 'js') return say('SLUICE_CRC32C=js: native CRC-32C not built');
  if (process.platform === 'win32') return say('native CRC-32C is not built on Windows: the JavaScript CRC-32C is used');
  if (!process.argv.includes('--force') && upToDate()) return;
  const include = [process.env.SLUICE_NODE_INCLUDE, resolve(process.execPath, '..', '..', 'include', 'node')].find(
    (d) => d !== undefined && d !== '' && existsSync(join(d, 'node_api.h')),
  );
  if (include === undefined) {
    return say("node_api.h not found (Node's include/node, or set SLUICE_NODE_INCLUDE): native CRC-32C not built, the JavaScript CRC-32C is used");
  }
  // CC may carry flags or a wrapper ("ccache gcc", "gcc -m64"), as make's CC does.
  const [cc, ...ccFlags] = (process.env.CC || 'cc').trim().split(/\s+/);
  const temporary = `${target}.${process.pid}.tmp`;
  const flags = [...ccFlags, '-O2', '-std=gnu11', '-fPIC', '-shared', '-pthread', '-Wall', `-I${include}`, source, '-o', temporary];
  if (process.platform === 'darwin') flags.push('-undefined', 'dynamic_lookup');
  try {
    mkdirSync(dirname(target), { recursive: true });
    execFileSync(cc, flags, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
    renameSync(temporary, target);
    say(`native CRC-32C built: ${target}`);
  } catch (error) {
    rmSync(temporary, { force: true });
    const detail = error instanceof Error && 'stderr' in error && error.stderr ? String(error.stderr).trim().split('\n')[0] : String(error);
    say(`native CRC-32C not built (${cc}: ${detail}): the JavaScript CRC-32C is used; install a C compiler (e.g. apt-get install gcc) and run npm rebuild to build it`);
  }
}

try {
  build();
} catch (error) {
  say(`native CRC-32C not built (${error instanceof Error ? error.message : String(error)}): the JavaScript CRC-32C is used`);
}
