/**
 * The index checkpoint worker thread: runs {@link runCheckpointJob} for every partition of the
 * process, one job at a time, and posts back the result or the error.
 */
import { parentPort } from 'node:worker_threads';
import { StorageError } from './errors.js';
import { runCheckpointJob, type CheckpointJob } from './index-checkpoint-work.js';

/** A job as posted to the worker. */
export interface CheckpointRequest {
  readonly id: number;
  readonly job: CheckpointJob;
}

/** The worker's answer to a {@link CheckpointRequest}. */
export type CheckpointReply =
  | { readonly id: number; readonly result: ReturnType<typeof runCheckpointJob> }
  | { readonly id: number; readonly error: { readonly reason: string | undefined; readonly message: string } };

parentPort?.on('message', (request: CheckpointRequest) => {
  let reply: CheckpointReply;
  try {
    reply = { id: request.id, result: runCheckpointJob(request.job) };
  } catch (error) {
    reply = { id: request.id, error: { reason: error instanceof StorageError ? error.reason : undefined, message: (error as Error).message ?? String(error) } };
  }
  parentPort?.postMessage(reply);
});
