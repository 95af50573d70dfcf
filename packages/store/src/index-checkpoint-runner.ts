import { Worker } from 'node:worker_threads';
import { StorageError, type StorageErrorReason } from './errors.js';
import { runCheckpointJob, type CheckpointJob, type CheckpointJobResult } from './index-checkpoint-work.js';
import type { CheckpointReply } from './index-checkpoint-worker.js';

/**
 * Runs index checkpoint jobs (sort + table encoding + file write, level merges) off the main
 * thread: on one worker thread shared by every partition of the process, started on first use
 * and unref'd while idle (it never keeps a process alive). Jobs run one at a time, in order.
 *
 * When the worker cannot start (a bundle without `index-checkpoint-worker.js`, a platform
 * without worker threads) or dies, jobs run inline on the calling thread, as before this
 * existed: slower to the appends beside them, never wrong. `SLUICE_INDEX_CHECKPOINTS=inline`
 * forces that (for comparisons).
 */
export interface CheckpointRunner {
  run(job: CheckpointJob): Promise<CheckpointJobResult>;
  /** Where jobs run now. */
  readonly thread: 'worker' | 'inline';
}

interface Waiting {
  readonly job: CheckpointJob;
  readonly resolve: (r: CheckpointJobResult) => void;
  readonly reject: (e: unknown) => void;
}

function runInline(job: CheckpointJob): Promise<CheckpointJobResult> {
  return new Promise((resolve) => setImmediate(resolve)).then(() => runCheckpointJob(job));
}

/** @internal exported for the tests of the fallback; partitions use {@link checkpointRunner}. */
export class WorkerCheckpointRunner implements CheckpointRunner {
  private worker: Worker | undefined;
  private broken: boolean;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();

  constructor(
    private readonly spawn: () => Worker = spawnWorker,
    inline = process.env.SLUICE_INDEX_CHECKPOINTS === 'inline',
  ) {
    this.broken = inline;
  }

  get thread(): 'worker' | 'inline' {
    return this.broken ? 'inline' : 'worker';
  }

  run(job: CheckpointJob): Promise<CheckpointJobResult> {
    const worker = this.broken ? undefined : this.start();
    if (worker === undefined) return runInline(job);
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      if (this.waiting.size === 0) worker.ref();
      this.waiting.set(id, { job, resolve, reject });
      worker.postMessage({ id, job });
    });
  }

  private start(): Worker | undefined {
    if (this.worker !== undefined) return this.worker;
    let worker: Worker;
    try {
      worker = this.spawn();
    } catch {
      this.broken = true;
      return undefined;
    }
    worker.unref();
    worker.on('message', (reply: CheckpointReply) => {
      const w = this.waiting.get(reply.id);
      if (w === undefined) return;
      this.waiting.delete(reply.id);
      if (this.waiting.size === 0) worker.unref();
      if ('result' in reply) w.resolve(reply.result);
      else w.reject(new StorageError((reply.error.reason ?? 'Unavailable') as StorageErrorReason, reply.error.message));
    });
    worker.on('error', () => this.fail(worker));
    worker.on('exit', () => this.fail(worker));
    this.worker = worker;
    return worker;
  }

  /** The worker is gone: what it was doing runs inline, and so does everything after. */
  private fail(worker: Worker): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.broken = true;
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of waiting) runInline(w.job).then(w.resolve, w.reject);
  }
}

function spawnWorker(): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    // Running from sources (tests, tsx): the worker registers tsx and resolves workspace packages to their sources too.
    const url = new URL('./index-checkpoint-worker.ts', here).href;
    return new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(url)}); })`, {
      eval: true,
      execArgv: ['--conditions=@sluice/source'],
    });
  }
  return new Worker(new URL('./index-checkpoint-worker.js', here));
}

let shared: CheckpointRunner | undefined;

/** The process's checkpoint runner. */
export function checkpointRunner(): CheckpointRunner {
  shared ??= new WorkerCheckpointRunner();
  return shared;
}
