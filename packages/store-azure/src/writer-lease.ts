import { randomUUID } from 'node:crypto';
import { StorageError } from '@sluice/store';
import { SOURCE, mapAzureError } from './azure-errors.js';
import type { LogBlobs } from './log-blobs.js';

/** Longest a release at close may take before the lease is left to expire. */
const RELEASE_TIMEOUT_MS = 5000;

/**
 * The single-writer lock of an Azure partition: a blob lease on the log's current (last) blob,
 * under one lease id for the writer's whole life (proposed again on each new blob). Every
 * append and seal carries the lease id as a condition, so a writer whose lease was broken, or
 * expired and taken by another writer, can no longer change the log (fencing).
 */
export class WriterLease {
  /** This writer's lease id, proposed on every blob it leases. */
  readonly leaseId = randomUUID();
  private blob: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;

  constructor(
    private readonly log: LogBlobs,
    /** 15–60 s, or -1 for an infinite lease. */
    private readonly durationSeconds: number,
  ) {}

  /** The blob whose lease is held, if any. */
  get heldBlob(): number | undefined {
    return this.blob;
  }

  /**
   * Leases `blob`. Rejects with reason `Locked` when another writer holds it. Repeating it after
   * a lost answer is safe: acquiring with the lease id already held renews it.
   */
  async acquire(blob: number): Promise<void> {
    await this.log.call(`take the writer lease on ${this.log.describe(blob)}`, (abortSignal) =>
      this.log.client(blob).getBlobLeaseClient(this.leaseId).acquireLease(this.durationSeconds, { abortSignal }),
    );
    this.blob = blob;
  }

  /**
   * Moves the lease to the next blob after a roll: leases `blob`, then releases the previous
   * one. Another writer holding `blob` means this one was overtaken: reason `Conflict`.
   */
  async moveTo(blob: number): Promise<void> {
    const previous = this.blob;
    try {
      await this.acquire(blob);
    } catch (error) {
      if (error instanceof StorageError && error.reason === 'Locked') {
        throw new StorageError(
          'Conflict',
          `${SOURCE} another writer leased ${this.log.describe(blob)} while this writer rolled to it: this writer was overtaken; stop writing from it and reopen the partition`,
          { cause: error },
        );
      }
      throw error;
    }
    if (previous !== undefined && previous !== blob) await this.releaseBlob(previous);
  }

  /**
   * Renews a finite lease every third of its duration until {@link release}. A renewal that
   * shows the lease is gone calls `onLost` with a `Conflict` error; a transient failure is
   * left to the next renewal (two more fit in the lease's duration).
   */
  startRenewing(onLost: (error: StorageError) => void): void {
    if (this.durationSeconds < 0 || this.timer !== undefined) return;
    const intervalMs = (this.durationSeconds * 1000) / 3;
    this.timer = setInterval(() => {
      const blob = this.blob;
      if (blob === undefined || this.renewing !== undefined) return;
      const action = `renew the writer lease on ${this.log.describe(blob)}`;
      this.renewing = this.log
        .client(blob)
        .getBlobLeaseClient(this.leaseId)
        .renewLease({ abortSignal: AbortSignal.timeout(Math.min(intervalMs, this.log.retry.requestTimeoutMs)) })
        .then(
          () => undefined,
          (error: unknown) => {
            const mapped = mapAzureError(error, action, this.log.containerName);
            // A blob left by a roll in the meantime does not matter any more.
            if (mapped.reason === 'Conflict' && blob === this.blob) onLost(mapped);
          },
        )
        .finally(() => {
          this.renewing = undefined;
        });
    }, intervalMs);
    this.timer.unref();
  }

  /** Stops renewing and releases the lease (best effort: otherwise it expires by itself). */
  async release(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.renewing;
    const blob = this.blob;
    this.blob = undefined;
    if (blob !== undefined) await this.releaseBlob(blob);
  }

  private async releaseBlob(blob: number): Promise<void> {
    await this.log
      .client(blob)
      .getBlobLeaseClient(this.leaseId)
      .releaseLease({ abortSignal: AbortSignal.timeout(Math.min(RELEASE_TIMEOUT_MS, this.log.retry.requestTimeoutMs)) })
      .catch(() => undefined);
  }
}
