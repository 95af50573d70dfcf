/** Base class of every error this package throws. */
export class HandlerError extends Error {
  readonly code: string = 'HANDLER_ERROR';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A message is malformed (no commands, empty id, a recipient that is not a string). Nothing was committed. */
export class InvalidMessageError extends HandlerError {
  override readonly code = 'INVALID_MESSAGE';
}

/** The partition a recipient lives in is not attached to the router (closed, restarting, unknown). Redeliver later. */
export class PartitionUnavailableError extends HandlerError {
  override readonly code = 'PARTITION_UNAVAILABLE';
  constructor(readonly partition: string, readonly messageId: string, options?: ErrorOptions) {
    super(`[sluice/handlers] partition "${partition}" is not available for message ${messageId}: it is closed or not attached; redeliver when it is back`, options);
  }
}

/** A message's commands address entities of more than one partition: a unit of work lives in one partition. */
export class CrossPartitionMessageError extends HandlerError {
  override readonly code = 'CROSS_PARTITION_MESSAGE';
  constructor(readonly messageId: string, readonly partitions: readonly string[]) {
    super(`[sluice/handlers] message ${messageId} addresses entities in partitions ${partitions.join(', ')}: a unit of work lives in one partition; send one message per partition (a saga coordinates them)`);
  }
}

const CODES = new Set(['HANDLER_ERROR', 'INVALID_MESSAGE', 'PARTITION_UNAVAILABLE', 'CROSS_PARTITION_MESSAGE']);

/** Guard that works across two copies of this package (instanceof, or the error's `code`). */
export function isHandlerError(error: unknown, code?: string): error is HandlerError {
  if (error instanceof HandlerError) return code === undefined || error.code === code;
  const c = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof c === 'string' && CODES.has(c) && (code === undefined || c === code);
}
