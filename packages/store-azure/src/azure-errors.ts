import { StorageError, type StorageErrorReason } from '@sluice/store';

/** Prefix of every message this package writes. */
export const SOURCE = '[sluice/store-azure]';

/** The service's error code (`x-ms-error-code`) of an Azure SDK error, or a Node network code. */
export function azureErrorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const details = (error as { details?: { errorCode?: unknown } }).details;
  if (typeof details === 'object' && details !== null && typeof details.errorCode === 'string') return details.errorCode;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** The HTTP status of an Azure SDK error, when the service answered. */
export function azureStatus(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const status = (error as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' && status > 0 ? status : undefined;
}

/** Lease codes that mean another writer holds the partition. */
const LEASE_HELD = new Set(['LeaseAlreadyPresent', 'LeaseIsBreakingAndCannotBeAcquired']);

/** Lease codes that mean this writer's lease is gone (broken, expired and taken, or never held). */
const LEASE_LOST = new Set([
  'LeaseLost',
  'LeaseIdMissing',
  'LeaseIdMismatchWithBlobOperation',
  'LeaseNotPresentWithBlobOperation',
  'LeaseIdMismatchWithLeaseOperation',
  'LeaseNotPresentWithLeaseOperation',
  'LeaseIsBrokenAndCannotBeRenewed',
  'LeaseIsBreakingAndCannotBeChanged',
]);

/** Failures of the connection itself: the request may or may not have reached the service. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'REQUEST_SEND_ERROR',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/**
 * Removes anything secret-looking from text taken from an SDK error: SAS signatures, account
 * keys and shared-key authorization headers.
 */
export function redactSecrets(text: string): string {
  return text
    .replace(/([?&]sig=)[^&\s"']+/gi, '$1REDACTED')
    .replace(/(AccountKey=)[^;\s"']+/gi, '$1REDACTED')
    .replace(/(SharedAccessSignature=)[^;\s"']+/gi, '$1REDACTED')
    .replace(/(SharedKey(?:Lite)?\s+[^:\s]+:)[^\s"']+/gi, '$1REDACTED');
}

/** The first line of an SDK error's message (the service's explanation), redacted. */
function serviceMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return redactSecrets(message.split('\n')[0].trim());
}

/**
 * What is kept of an SDK error as the `cause` of a `StorageError`: its status, codes and request
 * id, never the request (whose URL may carry a SAS token).
 */
function safeCause(error: unknown): unknown {
  if (error instanceof StorageError) return error;
  if (typeof error !== 'object' || error === null) return error;
  const name = (error as { name?: unknown }).name;
  if (name !== 'RestError' && azureStatus(error) === undefined) return error;
  const response = (error as { response?: { headers?: { get?: (h: string) => string | undefined } } }).response;
  const requestId = typeof response?.headers?.get === 'function' ? response.headers.get('x-ms-request-id') : undefined;
  return { name: 'RestError', statusCode: azureStatus(error), code: azureErrorCode(error), requestId, message: serviceMessage(error) };
}

/** True for an abort caused by a request timeout (`AbortSignal.timeout`) or a caller's signal. */
function isAbort(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}

/**
 * Maps an Azure SDK (or network) error onto a {@link StorageError}. `action` says what was being
 * done ("append 1024 bytes to blob \"c/p/00000001.log\""); `container` names the container for
 * the not-found message. Messages never include credentials.
 *
 * - 401, 403 → `Unauthorized`
 * - 404 `ContainerNotFound` → `NotFound` ("create it or set createContainer: true"); other 404 → `NotFound`
 * - 409 `LeaseAlreadyPresent` → `Locked` (another writer holds the partition)
 * - lease lost or broken (412 `LeaseNotPresentWithBlobOperation`, `LeaseIdMismatch…`, 409 on renew) → `Conflict`
 * - 412 `AppendPositionConditionNotMet`, other failed conditions, 409 `BlobAlreadyExists` → `Conflict`
 * - 412 `MaxBlobSizeConditionNotMet`, 409 `BlockCountExceedsLimit` → `Full`
 * - 408, 429, 5xx, network errors, timeouts → `Unavailable` (retryable)
 * - other 4xx → `Invalid`
 */
export function mapAzureError(error: unknown, action: string, container: string): StorageError {
  if (error instanceof StorageError) return error;
  const status = azureStatus(error);
  const code = azureErrorCode(error);
  const cause = safeCause(error);
  const what = status === undefined ? (code ?? 'no response') : `${status}${code === undefined ? '' : ` ${code}`}`;
  const make = (reason: StorageErrorReason, text: string, retryable?: boolean): StorageError =>
    new StorageError(reason, `${SOURCE} ${action}: ${text}`, { cause, ...(retryable === undefined ? {} : { retryable }) });

  if (status === 401 || status === 403) {
    return make(
      'Unauthorized',
      `access was refused (${what}: ${serviceMessage(error)}): check the account key, connection string or SAS token ` +
        `(not expired; permissions read, add, create, write and list) and the account's network rules`,
      false,
    );
  }
  if (code === 'ContainerNotFound') {
    return new StorageError('NotFound', `${SOURCE} container "${container}" not found: create it or set createContainer: true`, { cause });
  }
  if (status === 404) {
    return make('NotFound', `not found (${what}): a blob of the partition was deleted while in use; restore it from a copy or reopen the partition`);
  }
  if (code !== undefined && LEASE_HELD.has(code)) {
    return make(
      'Locked',
      `another writer holds the partition's lease (${what}): one writer per partition; close the other writer, ` +
        `or, if it crashed, wait for its lease to expire (leaseDurationSeconds) and open again`,
    );
  }
  if (code !== undefined && LEASE_LOST.has(code)) {
    return make(
      'Conflict',
      `this writer's lease is gone (${what}): the lease was broken or another writer took the partition over; ` +
        `stop writing from this process and reopen the partition`,
      false,
    );
  }
  if (code === 'MaxBlobSizeConditionNotMet' || code === 'BlockCountExceedsLimit') {
    return make('Full', `the blob is full (${what}): lower blobBytesMax or blobBlocksMax so the log rolls to a new blob earlier`, false);
  }
  if (code === 'AppendPositionConditionNotMet') {
    return make('Conflict', `the blob does not end where this writer expected (${what}): another writer appended; reopen the partition`, false);
  }
  if (code === 'BlobAlreadyExists' || status === 409 || status === 412) {
    return make('Conflict', `a conditional request lost (${what}: ${serviceMessage(error)}): another writer changed the partition; reopen it`, false);
  }
  if (status === 413 || code === 'RequestBodyTooLarge') {
    return make('Invalid', `the request is too large (${what}): lower blockBytesMax (4 MiB is accepted everywhere)`, false);
  }
  if (status !== undefined && TRANSIENT_STATUS.has(status)) {
    return make('Unavailable', `the service is unavailable (${what}): retry later; the partition must be reopened if a write failed`, true);
  }
  if (status !== undefined && status >= 400 && status < 500) {
    return make('Invalid', `the request was refused (${what}: ${serviceMessage(error)}): check the container name, prefix and options`, false);
  }
  if (isAbort(error)) {
    return make('Unavailable', `no answer in time (${serviceMessage(error)}): check the network, or raise requestTimeoutMs`, true);
  }
  if (/^Stream drains before getting enough data|^The operation cannot be completed in timeout/.test(serviceMessage(error))) {
    return make('Unavailable', `a download ended early (${serviceMessage(error)}): check the network; retry later`, true);
  }
  if (code !== undefined && NETWORK_CODES.has(code)) {
    return make('Unavailable', `the service could not be reached (${code}: ${serviceMessage(error)}): check the endpoint and the network; retry later`, true);
  }
  if (status !== undefined) {
    return make('Unavailable', `unexpected answer (${what}: ${serviceMessage(error)})`, status >= 500);
  }
  // A RestError without a status never got an answer: a transport failure, worth retrying.
  const restError = (error as { name?: unknown } | null)?.name === 'RestError';
  return make('Unavailable', `failed (${serviceMessage(error)})`, restError);
}
