import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

/** Options of {@link startClusterProcesses}. */
export interface ClusterProcessesOptions {
  /** The partitions' folders (`<dataDirectory>/<partition>`), `sluice.json` and `logs/` go here. */
  readonly dataDirectory: string;
  readonly partitions: readonly string[];
  /** The level's fsync policy, as `sluice.json` spells it. @default 'commit' */
  readonly fsync?: string;
  /** The `sluice` launcher to run. @default the committed `bin/sluice.js` of `@sluice/cli` */
  readonly launcher?: string;
  /** Longest wait for the broker or a node to report it is serving, in ms. @default 60000 */
  readonly startTimeoutMs?: number;
  /** Longest wait for a child to exit after SIGTERM before it is killed, in ms. @default 15000 */
  readonly stopTimeoutMs?: number;
  /** Aborting while the cluster starts stops what already runs and rejects. */
  readonly signal?: AbortSignal;
}

/** A broker and one node per partition, each a `sluice` child process of this one. */
export interface ClusterProcesses {
  readonly broker: string;
  readonly configPath: string;
  /** Process ids of the children (broker first), while they run. */
  readonly pids: readonly number[];
  /**
   * Rejects when a child exits before {@link stop} was called (a crashed or killed broker or
   * node), naming it and its log; never resolves otherwise. Race the work against it.
   */
  readonly failed: Promise<never>;
  /** SIGTERM to every child still running (nodes first, then the broker), then waits for each to exit. */
  stop(): Promise<void>;
}

interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly exited: Promise<void>;
}

/** The committed launcher of the `sluice` command (runs the sources in a clone, dist/ when installed). */
export function sluiceLauncher(): string {
  return join(dirname(createRequire(import.meta.url).resolve('@sluice/cli/package.json')), 'bin', 'sluice.js');
}

/**
 * Starts `sluice broker` on a free port of 127.0.0.1, writes a `sluice.json` for it in the
 * data folder (one file location per partition, one node per partition), and starts one
 * `sluice node` per partition. Resolves once each has said it serves; a child that exits
 * first, or a timeout, stops the others and rejects with the end of its log.
 */
export async function startClusterProcesses(options: ClusterProcessesOptions): Promise<ClusterProcesses> {
  const launcher = options.launcher ?? sluiceLauncher();
  const logs = join(options.dataDirectory, 'logs');
  await mkdir(logs, { recursive: true });
  const children: Child[] = [];
  let stopping = false;
  let fail: (error: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => (fail = reject));
  failed.catch(() => undefined);
  const watch = (child: Child): void => {
    void child.exited.then(() => {
      if (!stopping) fail(new Error(`[bank] sluice ${child.name} (pid ${child.process.pid}) exited while the bank ran (code ${child.process.exitCode ?? child.process.signalCode}): see ${join(logs, `${child.name}.log`)}`));
    });
  };
  const stop = async (): Promise<void> => {
    stopping = true;
    const stopTimeoutMs = options.stopTimeoutMs ?? 15_000;
    // Nodes first (they drain their requests through the broker), the broker last.
    for (const child of [...children].reverse()) await stopChild(child, stopTimeoutMs);
  };
  try {
    const broker = spawnSluice('broker', launcher, ['broker', '--endpoint', 'tcp://127.0.0.1:0'], options.dataDirectory, logs);
    children.push(broker.child);
    watch(broker.child);
    const endpoint = await broker.firstLine(options.startTimeoutMs, options.signal);
    if (!/^tcp:\/\/127\.0\.0\.1:\d+$/.test(endpoint)) throw new Error(`[bank] sluice broker printed "${endpoint}", not its endpoint: see ${join(logs, 'broker.log')}`);
    const configPath = join(options.dataDirectory, 'sluice.json');
    const nodeOf = (i: number) => `node-${i}`;
    await writeFile(
      configPath,
      `${JSON.stringify(
        {
          brokers: [endpoint],
          levels: { bank: { locations: [{ file: join(options.dataDirectory, '{partition}') }], fsync: options.fsync ?? 'commit' } },
          partitions: Object.fromEntries(options.partitions.map((name) => [name, 'bank'])),
          routing: { hash: options.partitions },
          nodes: Object.fromEntries(options.partitions.map((name, i) => [nodeOf(i), { partitions: [name] }])),
        },
        null,
        2,
      )}\n`,
    );
    const nodes = options.partitions.map((_, i) =>
      spawnSluice(nodeOf(i), launcher, ['node', '--config', configPath, '--node', nodeOf(i)], options.dataDirectory, logs),
    );
    children.push(...nodes.map((node) => node.child));
    for (const node of nodes) watch(node.child);
    const started = await Promise.all(nodes.map((node) => node.firstLine(options.startTimeoutMs, options.signal)));
    started.forEach((line, i) => {
      if (!line.startsWith(`node ${nodeOf(i)}:`)) throw new Error(`[bank] sluice node printed "${line}": see ${join(logs, `${nodeOf(i)}.log`)}`);
    });
    return {
      broker: endpoint,
      configPath,
      get pids() {
        return children.filter((c) => c.process.exitCode === null && c.process.signalCode === null).map((c) => c.process.pid ?? 0);
      },
      failed,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

function spawnSluice(name: string, launcher: string, args: readonly string[], cwd: string, logs: string): { child: Child; firstLine(timeoutMs?: number, signal?: AbortSignal): Promise<string> } {
  const logPath = join(logs, `${name}.log`);
  const log: WriteStream = createWriteStream(logPath, { flags: 'a' });
  // The data folder as working directory: every process of the cluster (the launcher's own
  // child too) is found by it, and relative paths in logs mean the same thing.
  const process_ = spawn(process.execPath, [launcher, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  process_.stderr?.pipe(log, { end: false });
  const exited = new Promise<void>((resolve) => process_.once('close', () => resolve()));
  void exited.then(() => log.end());
  const lines = createInterface({ input: process_.stdout! });
  let first: ((line: string) => void) | undefined;
  const firstSeen = new Promise<string>((resolve) => (first = resolve));
  lines.on('line', (line) => {
    if (first !== undefined) {
      const resolve = first;
      first = undefined;
      resolve(line);
    }
    log.write(`${line}\n`);
  });
  const child: Child = { name, process: process_, exited };
  return {
    child,
    firstLine(timeoutMs = 60_000, signal) {
      let timer: NodeJS.Timeout | undefined;
      const failed = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`[bank] sluice ${name} did not start within ${timeoutMs} ms: see ${logPath}`)), timeoutMs);
        const aborted = () => reject(new Error(`[bank] interrupted while sluice ${name} was starting`));
        if (signal?.aborted === true) aborted();
        signal?.addEventListener('abort', aborted, { once: true });
        void exited.then(() => reject(new Error(`[bank] sluice ${name} exited (code ${process_.exitCode ?? process_.signalCode}) before it served: see ${logPath}`)));
      });
      return Promise.race([firstSeen, failed]).finally(() => clearTimeout(timer));
    },
  };
}

async function stopChild(child: Child, timeoutMs: number): Promise<void> {
  const running = child.process.exitCode === null && child.process.signalCode === null;
  if (running) child.process.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)));
  const outcome = await Promise.race([child.exited, late]);
  clearTimeout(timer);
  if (outcome === 'late') {
    // The launcher forwards SIGTERM to the process it runs; one that ignores it is killed.
    child.process.kill('SIGKILL');
    await child.exited;
  }
}
