/** Base class of every error this package throws. */
export class SubscriptionError extends Error {
  readonly code: string = 'SUBSCRIPTION_ERROR';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The sequence checker found missing seqs and the subscription is configured to raise (or the replay could not fill them). */
export class SequenceGapError extends SubscriptionError {
  override readonly code = 'SEQUENCE_GAP';
  constructor(
    readonly subscriber: string,
    readonly missingFrom: number,
    readonly missingTo: number,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`[sluice/subscriptions] subscriber "${subscriber}": seqs ${missingFrom}..${missingTo} missing: ${detail}`, options);
  }
}

/** A stored checkpoint could not be read: it is never guessed at. */
export class CorruptCheckpointError extends SubscriptionError {
  override readonly code = 'CORRUPT_CHECKPOINT';
  constructor(readonly subscriber: string, detail: string, options?: ErrorOptions) {
    super(
      `[sluice/subscriptions] checkpoint of "${subscriber}" is corrupt (${detail}): repair it with checkpoints.reset("${subscriber}", seq) or delete and rebuild the subscriber`,
      options,
    );
  }
}

/** Another instance advanced the same checkpoint: two instances of one subscriber must not run at once. */
export class CheckpointConflictError extends SubscriptionError {
  override readonly code = 'CHECKPOINT_CONFLICT';
  constructor(readonly subscriber: string, options?: ErrorOptions) {
    super(
      `[sluice/subscriptions] checkpoint of "${subscriber}" was advanced by another instance: stop the other instance (one instance per subscriber and partition)`,
      options,
    );
  }
}

const CODES = new Set(['SUBSCRIPTION_ERROR', 'SEQUENCE_GAP', 'CORRUPT_CHECKPOINT', 'CHECKPOINT_CONFLICT']);

/** Guard that works across two copies of this package (instanceof, or the error's `code`). */
export function isSubscriptionError(error: unknown, code?: string): error is SubscriptionError {
  if (error instanceof SubscriptionError) return code === undefined || error.code === code;
  const c = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof c === 'string' && CODES.has(c) && (code === undefined || c === code);
}
