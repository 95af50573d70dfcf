/**
 * Base class of every error raised by `@sluice/majordomo` (or `@sluice/client` / `@sluice/node`, whose errors extend it).
 *
 * Check errors with {@link isBrokerError} rather than `instanceof`: it also recognises errors
 * thrown by another copy of this package (two versions installed side by side).
 */
export class BrokerError extends Error {
  override readonly name: string = 'BrokerError';
  /** Stable machine-readable code, checked across package copies. */
  readonly code: string = 'SLUICE_BROKER';
  /** Whether sending the same request again may succeed. */
  readonly retryable: boolean = false;
}

/** Options of a broker, client or worker are invalid; `problems` lists every one found. */
export class InvalidBrokerOptionsError extends BrokerError {
  override readonly name = 'InvalidBrokerOptionsError';
  override readonly code = 'SLUICE_BROKER_INVALID_OPTIONS';
  constructor(
    readonly component: string,
    readonly problems: readonly string[],
  ) {
    super(`[sluice/majordomo] invalid ${component} options: ${problems.join('; ')}`);
  }
}

/** The broker could not bind its endpoint. */
export class BrokerBindError extends BrokerError {
  override readonly name = 'BrokerBindError';
  override readonly code = 'SLUICE_BROKER_BIND';
  constructor(
    readonly endpoint: string,
    options?: ErrorOptions,
  ) {
    super(
      `[sluice/majordomo] cannot bind ${endpoint}: use a free port, or port 0 / "*" to let the ` +
        `system pick one and read broker.endpoint`,
      options,
    );
  }
}

/** No reply arrived within `timeoutMs` on any of `attempts` attempts. */
export class BrokerTimeoutError extends BrokerError {
  override readonly name = 'BrokerTimeoutError';
  override readonly code = 'SLUICE_BROKER_TIMEOUT';
  override readonly retryable = true;
  constructor(
    readonly service: string,
    readonly attempts: number,
    readonly timeoutMs: number,
    readonly endpoints: readonly string[],
  ) {
    super(
      `[sluice/majordomo] no reply from service "${service}" after ${attempts} attempt(s) of ` +
        `${timeoutMs} ms via ${endpoints.join(', ')}: check that a broker is running there and a ` +
        `worker serves "${service}" (mmi.service), or raise timeoutMs / attemptsMax`,
    );
  }
}

/**
 * The broker refused or gave up a correlated request. `status` is
 * `"503"` (queue full, too many services or queued requests: back off and retry),
 * `"504"` (no worker took it within requestExpiryMs: start a worker for the service) or
 * `"502"` (every worker it was delivered to was lost: the request may or may not have run).
 */
export class BrokerRejectedError extends BrokerError {
  override readonly name = 'BrokerRejectedError';
  override readonly code = 'SLUICE_BROKER_REJECTED';
  override readonly retryable: boolean;
  constructor(
    readonly service: string,
    readonly status: string,
    detail: string,
  ) {
    super(`[sluice/majordomo] broker rejected a request to "${service}" (${status}): ${detail}`);
    this.retryable = status === '503' || status === '502';
  }
}

/** The worker's handler failed on the request; `detail` is the handler's error message. */
export class WorkerFailedError extends BrokerError {
  override readonly name = 'WorkerFailedError';
  override readonly code = 'SLUICE_BROKER_WORKER_FAILED';
  constructor(
    readonly service: string,
    readonly detail: string,
  ) {
    super(
      `[sluice/majordomo] the worker for "${service}" failed on the request: ${detail}; ` +
        `the handler should encode expected failures in its reply frames`,
    );
  }
}

/** The request was aborted through its `AbortSignal`; the signal's reason is the `cause`. */
export class RequestAbortedError extends BrokerError {
  override readonly name = 'RequestAbortedError';
  override readonly code = 'SLUICE_BROKER_ABORTED';
  constructor(readonly service: string, options?: ErrorOptions) {
    super(`[sluice/majordomo] request to "${service}" aborted by its signal`, options);
  }
}

/** The client has `outstandingMax` requests open already. */
export class ClientOverloadedError extends BrokerError {
  override readonly name = 'ClientOverloadedError';
  override readonly code = 'SLUICE_BROKER_CLIENT_OVERLOADED';
  override readonly retryable = true;
  constructor(readonly outstandingMax: number) {
    super(
      `[sluice/majordomo] client already has ${outstandingMax} outstanding requests: await some ` +
        `replies before sending more, or raise outstandingMax`,
    );
  }
}

/** A request cannot be sent as given (bad service name, empty body in rfc7 mode, ...). */
export class InvalidRequestError extends BrokerError {
  override readonly name = 'InvalidRequestError';
  override readonly code = 'SLUICE_BROKER_INVALID_REQUEST';
  constructor(message: string) {
    super(`[sluice/majordomo] ${message}`);
  }
}

/** The client, worker or broker was closed; pending requests end with this error. */
export class BrokerClosedError extends BrokerError {
  override readonly name = 'BrokerClosedError';
  override readonly code = 'SLUICE_BROKER_CLOSED';
  constructor(readonly component: string) {
    super(`[sluice/majordomo] the ${component} is closed: create a new one`);
  }
}

/**
 * The security handshake with the broker failed on every attempt, so the request was never
 * delivered. `failure` says how: `refused` (the broker's allow-list does not hold this
 * client's public key), `mechanism-mismatch` (one side uses CURVE, the other does not) or
 * `failed` (the handshake broke off: usually a wrong `serverPublicKey`). Not retryable: fix
 * the keys. Messages name public keys only, never secret ones.
 */
export class BrokerAuthenticationError extends BrokerError {
  override readonly name = 'BrokerAuthenticationError';
  override readonly code = 'SLUICE_BROKER_AUTHENTICATION';
  constructor(
    readonly service: string,
    readonly failure: 'refused' | 'mechanism-mismatch' | 'failed',
    readonly endpoints: readonly string[],
    readonly publicKey: string | undefined,
  ) {
    super(`[sluice/majordomo] request to "${service}" not delivered: ${authenticationAdvice(failure, endpoints, publicKey)}`);
  }
}

function authenticationAdvice(
  failure: 'refused' | 'mechanism-mismatch' | 'failed',
  endpoints: readonly string[],
  publicKey: string | undefined,
): string {
  const where = endpoints.join(', ');
  switch (failure) {
    case 'refused':
      return (
        `the broker at ${where} refused this client's CURVE public key ${publicKey ?? ''}: ` +
        "add it to the broker's curve.allowedClientKeys"
      );
    case 'mechanism-mismatch':
      return publicKey === undefined
        ? `the broker at ${where} requires CURVE: set curve { serverPublicKey, secretKey } on the client`
        : `the broker at ${where} does not use CURVE: remove curve from the client or enable it on the broker`;
    case 'failed':
      return (
        `the security handshake with the broker at ${where} failed: check that curve.serverPublicKey is ` +
        "the broker's public key and that the broker uses CURVE"
      );
  }
}

/**
 * True when `error` comes from `@sluice/majordomo` (or `@sluice/client` / `@sluice/node`, whose errors extend it) (any copy of it), optionally with one `code`.
 *
 * @example
 * if (isBrokerError(error, 'SLUICE_BROKER_TIMEOUT')) retryLater();
 */
export function isBrokerError(error: unknown, code?: string): error is BrokerError {
  if (error instanceof BrokerError) return code === undefined || error.code === code;
  if (typeof error !== 'object' || error === null) return false;
  const actual = (error as { code?: unknown }).code;
  if (typeof actual !== 'string' || !actual.startsWith('SLUICE_BROKER')) return false;
  return code === undefined || actual === code;
}
