import {
  CommandIdConflictError,
  CorruptFrameError,
  InvalidRequestError as StoreInvalidRequestError,
  PartitionClosedError,
  PartitionFaultedError,
  PartitionOverloadedError,
  StorageError,
  WrongExpectedVersionError,
  type StorageErrorReason,
} from '@sluice/store';
import { BrokerError } from '@sluice/majordomo';
import type { StoreErrorInfo } from './store-protocol.js';

/**
 * Errors of the store service that have no counterpart in `@sluice/store`. Store failures
 * (wrong expected version, command-id conflict, storage errors, closed / faulted /
 * overloaded partitions, invalid requests) come back as `@sluice/store`'s own classes, so
 * `isWrongExpectedVersionError` and friends work the same locally and through a broker.
 */

/** The partition is not in the client's routing, or the node that got the request does not host it. */
export class UnknownPartitionError extends BrokerError {
  override readonly name = 'UnknownPartitionError';
  override readonly code = 'SLUICE_BROKER_UNKNOWN_PARTITION';
  constructor(
    readonly partition: string,
    detail: string,
  ) {
    super(`[sluice/client] unknown partition "${partition}": ${detail}`);
  }
}

/** No routing rule matches the stream (prefix rules only, no `hash` fallback). */
export class UnroutableStreamError extends BrokerError {
  override readonly name = 'UnroutableStreamError';
  override readonly code = 'SLUICE_BROKER_UNROUTABLE_STREAM';
  constructor(readonly streamId: string) {
    super(
      `[sluice/client] no routing rule matches stream "${streamId}": add a prefix rule for it, ` +
        `or a "hash" partition list as the fallback`,
    );
  }
}

/** The node could not decode the request: a bug in the sender, or not a store protocol client. */
export class MalformedStoreRequestError extends BrokerError {
  override readonly name = 'MalformedStoreRequestError';
  override readonly code = 'SLUICE_BROKER_MALFORMED_STORE_REQUEST';
  constructor(detail: string) {
    super(detail.startsWith('[sluice/') ? detail : `[sluice/client] ${detail}`);
  }
}

/** The node speaks other store protocol versions than this client. */
export class UnsupportedStoreProtocolError extends BrokerError {
  override readonly name = 'UnsupportedStoreProtocolError';
  override readonly code = 'SLUICE_BROKER_UNSUPPORTED_STORE_PROTOCOL';
  constructor(
    readonly versionMin: number,
    readonly versionMax: number,
    detail: string,
  ) {
    super(detail);
  }
}

/** A reply that is not a well-formed store protocol reply (a worker of another kind answered). */
export class MalformedStoreReplyError extends BrokerError {
  override readonly name = 'MalformedStoreReplyError';
  override readonly code = 'SLUICE_BROKER_MALFORMED_STORE_REPLY';
  constructor(
    readonly service: string,
    problem: string,
  ) {
    super(
      `[sluice/client] the reply from "${service}" is not a store protocol reply (${problem}): ` +
        `check that only Sluice nodes register services named sluice.partition.*`,
    );
  }
}

/** The node failed unexpectedly on the request (a bug), or answered with an error code this client does not know. */
export class StoreServiceError extends BrokerError {
  override readonly name = 'StoreServiceError';
  override readonly code = 'SLUICE_BROKER_STORE_SERVICE';
  override readonly retryable: boolean;
  constructor(
    readonly partition: string,
    detail: string,
    retryable: boolean,
  ) {
    super(detail.startsWith('[sluice/') ? detail : `[sluice/client] partition "${partition}": ${detail}`);
    this.retryable = retryable;
  }
}

/**
 * A partition did not answer through any broker, even after retries: no node serving it is
 * registered, or it is too slow for `timeoutMs`. An append may or may not have been applied:
 * send it again with the same command ids (`commandIds`) to find out; a duplicate gets the
 * original result.
 */
export class PartitionUnavailableError extends BrokerError {
  override readonly name = 'PartitionUnavailableError';
  override readonly code = 'SLUICE_BROKER_PARTITION_UNAVAILABLE';
  override readonly retryable = true;
  constructor(
    readonly partition: string,
    /** The command ids of the append that failed, to send it again with (empty for reads). */
    readonly commandIds: readonly string[],
    options: ErrorOptions & { readonly endpoints: readonly string[] },
  ) {
    const append =
      commandIds.length > 0
        ? `; the append may or may not have been applied: send it again with commandIds ${JSON.stringify(commandIds)} ` +
          `(a duplicate gets the original result)`
        : '';
    const detail = options.cause instanceof Error ? ` (${options.cause.message})` : '';
    super(
      `[sluice/client] partition "${partition}" did not answer via ${options.endpoints.join(', ')}${detail}: check that a ` +
        `node hosting it runs and is registered (service sluice.partition.${partition}), or raise timeoutMs${append}`,
      { cause: options.cause },
    );
  }
}

const RETRYABLE_STORE_CODES: ReadonlySet<string> = new Set(['SLUICE_PARTITION_OVERLOADED', 'SLUICE_PARTITION_CLOSED']);

/**
 * The error reply for an error thrown by a partition. Classes are recognised by their
 * `code`, so errors from another copy of `@sluice/store` map the same way.
 */
export function storeErrorInfo(error: unknown, partition: string): StoreErrorInfo {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  const message = error instanceof Error ? error.message : String(error);
  const base = { partition, message, retryable: typeof code === 'string' && RETRYABLE_STORE_CODES.has(code) };
  switch (code) {
    case 'SLUICE_WRONG_EXPECTED_VERSION': {
      const e = error as WrongExpectedVersionError;
      const expected = e.expectedVersion;
      return {
        ...base,
        code: 'wrong-expected-version',
        streamId: e.streamId,
        expectedVersion: typeof expected === 'number' || expected === 'no-stream' || expected === 'exists' ? expected : 'any',
        actualVersion: e.actualVersion,
      };
    }
    case 'SLUICE_COMMAND_ID_CONFLICT':
      return { ...base, code: 'command-id-conflict', commandIds: [...(error as CommandIdConflictError).commandIds] };
    case 'SLUICE_INVALID_REQUEST':
      return { ...base, code: 'invalid-request' };
    case 'SLUICE_STORAGE': {
      const e = error as StorageError;
      return { ...base, code: 'storage-error', reason: e.reason, retryable: e.retryable === true };
    }
    case 'SLUICE_PARTITION_CLOSED':
      return { ...base, code: 'partition-closed' };
    case 'SLUICE_PARTITION_FAULTED':
      return { ...base, code: 'partition-faulted' };
    case 'SLUICE_PARTITION_OVERLOADED':
      return { ...base, code: 'partition-overloaded', queueMax: (error as PartitionOverloadedError).queueMax };
    case 'SLUICE_CORRUPT_FRAME':
      return { ...base, code: 'corrupt-frame', event: (error as CorruptFrameError).event };
    default:
      return {
        ...base,
        code: 'internal',
        message: `[sluice/client] partition "${partition}": the node failed unexpectedly: ${message}`,
      };
  }
}

/**
 * The error a client throws for an error reply: `@sluice/store`'s classes for store errors
 * (their message replaced by the node's, which names the partition and what to do), this
 * package's for protocol errors.
 */
export function errorFromStoreReply(info: StoreErrorInfo): Error {
  const { partition, message } = info;
  switch (info.code) {
    case 'wrong-expected-version':
      return withMessage(new WrongExpectedVersionError(partition, info.streamId, info.expectedVersion, info.actualVersion), message);
    case 'command-id-conflict':
      return withMessage(new CommandIdConflictError(partition, info.commandIds), message);
    case 'invalid-request':
      return new StoreInvalidRequestError(message);
    case 'storage-error':
      return new StorageError(info.reason as StorageErrorReason, message, { retryable: info.retryable });
    case 'partition-closed':
      return withMessage(new PartitionClosedError(partition), message);
    case 'partition-faulted':
      return new PartitionFaultedError(partition, { cause: new Error(message) });
    case 'partition-overloaded':
      return withMessage(new PartitionOverloadedError(partition, info.queueMax), message);
    case 'corrupt-frame':
      return withMessage(new CorruptFrameError(partition, info.event, 'a framed event does not match its CRC-32C'), message);
    case 'unknown-partition':
      return new UnknownPartitionError(partition, message);
    case 'malformed-request':
      return new MalformedStoreRequestError(message);
    case 'unsupported-version':
      return new UnsupportedStoreProtocolError(info.versionMin, info.versionMax, message);
    case 'internal':
      return new StoreServiceError(partition, message, info.retryable);
    case 'other':
      return new StoreServiceError(partition, `error code ${info.wireCode}: ${message}`, info.retryable);
  }
}

function withMessage<E extends Error>(error: E, message: string): E {
  if (message.length > 0) error.message = message;
  return error;
}
