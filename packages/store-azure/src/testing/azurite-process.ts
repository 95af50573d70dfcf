import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

/** Azurite's well-known development account (public, documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT_NAME = 'devstoreaccount1';
/** Azurite's well-known development account key (public, documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

/** Options of {@link startAzurite}. */
export interface AzuriteOptions {
  /**
   * Port to listen on; 0 lets the OS pick a free one (read back from Azurite's output).
   * @default 0
   */
  readonly port?: number;
  /**
   * Folder for on-disk persistence. When absent, Azurite keeps everything in memory
   * (`--inMemoryPersistence`) and nothing survives a stop.
   * @default undefined (in memory)
   */
  readonly location?: string;
  /**
   * Longest wait for Azurite to report that it listens.
   * @default 30000
   */
  readonly startTimeoutMs?: number;
}

/** A running Azurite blob service, started by {@link startAzurite}. */
export interface AzuriteInstance {
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** Blob endpoint of the development account: `http://127.0.0.1:<port>/devstoreaccount1`. */
  readonly blobEndpoint: string;
  /** A connection string for the development account on this instance. */
  readonly connectionString: string;
  /** Process id of the Azurite child. */
  readonly pid: number;
  /**
   * Stops this Azurite child (SIGTERM, so on-disk persistence is flushed; SIGKILL if it has not
   * exited after `timeoutMs`) and resolves once it has exited. Idempotent.
   */
  stop(timeoutMs?: number): Promise<void>;
}

/** The path of Azurite's blob service entry point inside its npm package. */
export function azuriteBlobMain(): string {
  const require = createRequire(import.meta.url);
  const packageJson = require.resolve('azurite/package.json');
  return packageJson.slice(0, -'package.json'.length) + 'dist/src/blob/main.js';
}

/** A connection string for the development account behind `blobEndpoint`. */
export function azuriteConnectionString(blobEndpoint: string): string {
  return `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT_NAME};AccountKey=${AZURITE_ACCOUNT_KEY};BlobEndpoint=${blobEndpoint};`;
}

/**
 * Starts the Azurite blob service from its npm package (`azurite`, which must be installed) on
 * 127.0.0.1, by default on a free port with in-memory persistence, and resolves once it
 * listens. Its output never reaches the console.
 *
 * @example
 * const azurite = await startAzurite();
 * const storage = createAzureStorage({ connectionString: azurite.connectionString, container: 'c', prefix: 'p', createContainer: true });
 * // ...
 * await azurite.stop();
 */
export async function startAzurite(options: AzuriteOptions = {}): Promise<AzuriteInstance> {
  const port = options.port ?? 0;
  const args = [azuriteBlobMain(), '--blobHost', '127.0.0.1', '--blobPort', String(port), '--silent', '--skipApiVersionCheck', '--loose', '--disableTelemetry'];
  if (options.location === undefined) args.push('--inMemoryPersistence');
  else args.push('--location', options.location);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.location });
  // If this process exits without stopping it (a crash, process.exit), take the child along.
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      process.off('exit', killOnExit);
      resolve();
    }),
  );
  let output = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    if (output.length < 8192) output += s;
  });
  try {
    const boundPort = await listeningPort(child, options.startTimeoutMs ?? 30_000, () => output);
    const blobEndpoint = `http://127.0.0.1:${boundPort}/${AZURITE_ACCOUNT_NAME}`;
    let stopping: Promise<void> | undefined;
    return {
      port: boundPort,
      blobEndpoint,
      connectionString: azuriteConnectionString(blobEndpoint),
      pid: child.pid as number,
      stop: (timeoutMs = 10_000) => (stopping ??= stopChild(child, exited, timeoutMs)),
    };
  } catch (error) {
    await stopChild(child, exited, 1000);
    throw error;
  }
}

/** Reads the port from Azurite's "successfully listens on http://host:port" line. */
function listeningPort(child: ChildProcess, timeoutMs: number, stderr: () => string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NonNullable<ChildProcess['stdout']> });
    const done = (error: Error | undefined, port?: number): void => {
      clearTimeout(timer);
      child.off('exit', onExit);
      lines.off('line', onLine);
      // Keep draining stdout so the child never blocks on a full pipe.
      lines.on('line', () => undefined);
      if (error !== undefined) reject(error);
      else resolve(port as number);
    };
    const onLine = (line: string): void => {
      const m = /successfully listens on https?:\/\/[^\s:]+:(\d+)/.exec(line);
      if (m !== null) done(undefined, Number(m[1]));
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      done(new Error(`[sluice/store-azure] Azurite exited before listening (code ${code}, signal ${signal}): ${stderr().trim() || 'no output'}`));
    };
    const timer = setTimeout(
      () => done(new Error(`[sluice/store-azure] Azurite did not report listening within ${timeoutMs} ms: ${stderr().trim() || 'no output'}`)),
      timeoutMs,
    );
    lines.on('line', onLine);
    child.once('exit', onExit);
  });
}

async function stopChild(child: ChildProcess, exited: Promise<void>, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    exited.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    child.kill('SIGKILL');
    await exited;
  }
}
