import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { freePort } from './free-port.js';
import { stopPid } from './process-exit.js';
import { trackCleanup } from './run-cleanups.js';

/** A redis-server this process started; `stop` ends it by its PID. */
export interface RedisServer {
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  readonly version: string;
  stop(): Promise<void>;
}

export interface StartRedisOptions {
  /** The `redis-server` binary. */
  readonly binary: string;
  /** A fresh folder for the append-only file. */
  readonly directory: string;
}

const READY = /Ready to accept connections/;
const STARTUP_TIMEOUT_MS = 30_000;

/**
 * Starts redis-server on a free port on 127.0.0.1, durable: append-only file fsynced before
 * every reply (`appendfsync always`), no RDB snapshots, data in `directory`.
 */
export async function startRedis(options: StartRedisOptions): Promise<RedisServer> {
  await mkdir(options.directory, { recursive: true });
  const port = await freePort();
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', options.directory,
    '--appendonly', 'yes', '--appendfsync', 'always', '--save', '',
    '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'notice',
  ];
  const child = spawn(options.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`[sluice/bench] could not start ${options.binary}: check that it runs`);
  let output = '';
  const stop = async (): Promise<void> => stopPid(pid, 'SIGTERM', 30_000);
  const forget = trackCleanup(stop);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`did not say "Ready" within ${STARTUP_TIMEOUT_MS} ms`)), STARTUP_TIMEOUT_MS);
      const onData = (chunk: Buffer): void => {
        output = (output + chunk.toString('utf8')).slice(-4000);
        if (READY.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${code ?? signal}`));
      });
    });
  } catch (error) {
    forget();
    await stop();
    throw new Error(`[sluice/bench] redis-server did not start on port ${port}: ${(error as Error).message}\n${output.slice(-2000)}`, { cause: error });
  }
  // Keep draining its output so a full pipe never blocks the server.
  child.stdout.resume();
  child.stderr.resume();
  const version = /version=([\d.]+)/.exec(output)?.[1] ?? 'unknown';
  return {
    host: '127.0.0.1',
    port,
    pid,
    version,
    async stop() {
      forget();
      await stop();
    },
  };
}
