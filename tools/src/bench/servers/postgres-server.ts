import { execFile } from 'node:child_process';
import { chown, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port.js';
import { stopPid } from './process-exit.js';
import { trackCleanup } from './run-cleanups.js';

const run = promisify(execFile);

/** Settings of the benchmarked PostgreSQL: durable defaults, sized so checkpoints stay out of the runs. */
export const POSTGRES_SETTINGS: Readonly<Record<string, string>> = {
  fsync: 'on',
  synchronous_commit: 'on',
  full_page_writes: 'on',
  wal_sync_method: 'fdatasync',
  shared_buffers: '1GB',
  wal_buffers: '64MB',
  max_wal_size: '16GB',
  checkpoint_timeout: '1h',
  max_connections: '200',
};

/** A PostgreSQL server this process started; `stop` ends it by the PID in its own data folder. */
export interface PostgresServer {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  readonly pid: number;
  readonly version: string;
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** Folder with `initdb`, `pg_ctl`, `postgres`. */
  readonly binDir: string;
  /** A fresh folder for the cluster; its data goes in `<directory>/data`. */
  readonly directory: string;
}

/**
 * Creates a cluster in `directory` (initdb) and starts it on a free port on 127.0.0.1 with
 * {@link POSTGRES_SETTINGS}. PostgreSQL refuses to run as root: as root it runs as the
 * `postgres` user (the Debian package creates it) through `runuser`, owning `directory`.
 */
export async function startPostgres(options: StartPostgresOptions): Promise<PostgresServer> {
  const dataDir = join(options.directory, 'data');
  const logFile = join(options.directory, 'postgres.log');
  const asUser = await postgresUser();
  await mkdir(options.directory, { recursive: true });
  if (asUser !== undefined) await chown(options.directory, asUser.uid, asUser.gid);
  const exec = async (binary: string, args: readonly string[]): Promise<string> => {
    const file = join(options.binDir, binary);
    const [command, argv] = asUser === undefined ? [file, args] : ['runuser', ['-u', 'postgres', '--', file, ...args]];
    const { stdout } = await run(command, argv, { timeout: 120_000, cwd: options.directory });
    return stdout;
  };
  // --no-sync only skips syncing initdb's own files; the server itself runs with fsync on.
  await exec('initdb', ['-D', dataDir, '-U', 'bench', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const port = await freePort();
  const settings = Object.entries({ ...POSTGRES_SETTINGS, listen_addresses: '127.0.0.1', port: String(port), unix_socket_directories: options.directory })
    .map(([name, value]) => `-c ${name}=${value}`)
    .join(' ');
  try {
    await exec('pg_ctl', ['-D', dataDir, '-l', logFile, '-w', '-t', '60', '-o', settings, 'start']);
  } catch (error) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    throw new Error(`[sluice/bench] PostgreSQL did not start on port ${port}: ${(error as Error).message.trim()}\n${log.slice(-2000)}`, { cause: error });
  }
  // The postmaster's PID is the first line of postmaster.pid in the cluster this run created.
  const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`[sluice/bench] no PID in ${dataDir}/postmaster.pid: stop the server by hand`);
  const version = (await exec('postgres', ['--version'])).trim();
  // SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
  const stop = (): Promise<void> => stopPid(pid, 'SIGINT', 30_000);
  const forget = trackCleanup(stop);
  return {
    host: '127.0.0.1',
    port,
    user: 'bench',
    database: 'postgres',
    pid,
    version,
    async stop() {
      forget();
      await stop();
    },
  };
}

/** The `postgres` user's ids when running as root (PostgreSQL will not), otherwise undefined. */
async function postgresUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    return { uid, gid };
  } catch (error) {
    throw new Error('[sluice/bench] PostgreSQL refuses to run as root and there is no "postgres" user: create one (useradd --system postgres) or run the bench as another user', { cause: error });
  }
}
