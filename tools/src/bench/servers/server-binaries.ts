import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SystemSkippedError, type BenchContext } from '../bench-system.js';

/** Debian packages the bench can install, and the binary each provides. */
export type ServerPackage = 'postgresql' | 'redis-server';

/** The setup script, beside the sources in tools/scripts (same depth from src/ and dist/). */
export const BENCH_SETUP_SCRIPT = fileURLToPath(new URL('../../../scripts/bench-setup.sh', import.meta.url));

const INSTALL_TIMEOUT_MS = 15 * 60 * 1000;

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * The folder holding `postgres`, `initdb` and `pg_ctl`: Debian keeps them in
 * /usr/lib/postgresql/<major>/bin (the newest major wins), others put them on the PATH.
 */
export function findPostgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const majors = readdirSync(root)
      .filter((name) => /^\d+$/.test(name) && isExecutable(join(root, name, 'bin', 'postgres')))
      .sort((a, b) => Number(b) - Number(a));
    if (majors.length > 0) return join(root, majors[0], 'bin');
  }
  const postgres = onPath('postgres');
  if (postgres === undefined) return undefined;
  const dir = dirname(realpathSync(postgres));
  return isExecutable(join(dir, 'initdb')) && isExecutable(join(dir, 'pg_ctl')) ? dir : undefined;
}

/** The `redis-server` binary, or undefined. */
export function findRedisServer(): string | undefined {
  return onPath('redis-server') ?? (isExecutable('/usr/bin/redis-server') ? '/usr/bin/redis-server' : undefined);
}

const finders: Record<ServerPackage, () => string | undefined> = {
  postgresql: findPostgresBinDir,
  'redis-server': findRedisServer,
};

let installing: Promise<void> | undefined;

/**
 * Installs every missing server package in one run of tools/scripts/bench-setup.sh (one
 * apt-get update for all). Runs at most once per process.
 */
function installMissingPackages(context: BenchContext): Promise<void> {
  installing ??= (async () => {
    const missing = (Object.keys(finders) as ServerPackage[]).filter((p) => finders[p]() === undefined);
    if (missing.length === 0) return;
    context.log(`installing ${missing.join(' ')} with ${BENCH_SETUP_SCRIPT} (apt-get; once per machine)`);
    await runScript(BENCH_SETUP_SCRIPT, missing);
  })();
  return installing;
}

function runScript(script: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: INSTALL_TIMEOUT_MS });
    let output = '';
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${script} ${args.join(' ')} exited with ${code ?? signal}:\n${output.trim()}`));
    });
  });
}

/**
 * Finds a server's binary, installing the package first when it is missing and the run
 * allows it. Throws {@link SystemSkippedError} with what to do when it stays missing.
 */
export async function requireServerBinary(pkg: ServerPackage, context: BenchContext): Promise<string> {
  const found = finders[pkg]();
  if (found !== undefined) return found;
  if (!context.installMissing) {
    throw new SystemSkippedError(`${pkg} is not installed: run "sudo bash tools/scripts/bench-setup.sh ${pkg}" (the full bench does this itself)`);
  }
  try {
    await installMissingPackages(context);
  } catch (error) {
    throw new SystemSkippedError(`${pkg} is not installed and installing it failed: ${(error as Error).message}`, { cause: error });
  }
  const installed = finders[pkg]();
  if (installed === undefined) throw new SystemSkippedError(`${pkg} is still missing after ${BENCH_SETUP_SCRIPT} ran: install it by hand`);
  return installed;
}
