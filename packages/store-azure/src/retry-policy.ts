import type { StorageError } from '@sluice/store';
import { mapAzureError } from './azure-errors.js';

/** How requests are timed out and retried. */
export interface RetryPolicy {
  /** Tries per request, the first included. */
  readonly attemptsMax: number;
  /** Delay before the first retry; doubles each time, up to {@link RETRY_DELAY_MAX_MS}. */
  readonly retryDelayMs: number;
  /** Longest wait for one request's answer. */
  readonly requestTimeoutMs: number;
}

/** Upper bound of the delay between two tries. */
export const RETRY_DELAY_MAX_MS = 5000;

/** True when trying the same request again may succeed. */
export function isTransient(error: StorageError): boolean {
  return error.reason === 'Unavailable' && error.retryable;
}

/** Waits before retry number `attempt` (1 for the first retry). */
export function backoff(policy: RetryPolicy, attempt: number): Promise<void> {
  const ms = Math.min(RETRY_DELAY_MAX_MS, policy.retryDelayMs * 2 ** (attempt - 1));
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs an idempotent request with a timeout per try, retrying transient failures (network
 * errors, timeouts, 408/429/5xx) up to `attemptsMax` tries, and maps the final failure onto a
 * `StorageError`. Only for requests that are safe to repeat; appends use their own loop.
 */
export async function withRetries<T>(policy: RetryPolicy, action: string, container: string, request: (signal: AbortSignal) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await request(AbortSignal.timeout(policy.requestTimeoutMs));
    } catch (error) {
      const mapped = mapAzureError(error, action, container);
      if (!isTransient(mapped) || attempt >= policy.attemptsMax) throw mapped;
      await backoff(policy, attempt);
    }
  }
}
