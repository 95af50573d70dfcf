import { stripUndefined } from './broker-options.js';
import { checkPeerCurve, type CurveOptions, type ResolvedCurve } from './curve.js';
import { OptionProblems } from './validate.js';

/**
 * How a {@link MajordomoClient} matches replies to requests.
 *
 * - `correlated`: a Sluice correlation frame goes first in every request body and comes back
 *   first in the reply; any number of requests may be outstanding, to any services, and
 *   replies may arrive in any order. Needs workers that echo the frame: every
 *   `MajordomoWorker` does; the guide's reference workers echo the whole body only if the
 *   handler does.
 * - `rfc7`: plain MDP/0.1 bodies, understood by any RFC 7 worker. A reply names only its
 *   service, so at most one request per service is outstanding; the others wait in the
 *   client, in order.
 */
export type ClientMode = 'correlated' | 'rfc7';

/** Options of a {@link MajordomoClient}. */
export interface ClientOptions {
  /**
   * Broker endpoints, tried in order: on a timeout the client fails over to the next one
   * (wrapping around), on a fresh socket, and resends every outstanding request there.
   */
  readonly endpoints: readonly string[];
  /** @default "correlated" */
  readonly mode?: ClientMode;
  /**
   * Time to wait for one attempt's reply, unless a request sets its own. Must exceed the
   * slowest handler plus queueing: a timeout is taken as a dead broker.
   * @default 2500
   */
  readonly timeoutMs?: number;
  /**
   * Sends of one request, first one included, before it fails with `BrokerTimeoutError`. Each
   * fail-over resends every outstanding request, and each resend counts as an attempt, so a
   * request never waits longer than about `attemptsMax × timeoutMs`.
   * @default 3
   */
  readonly attemptsMax?: number;
  /**
   * Requests open at once (sent or waiting); one more fails with `ClientOverloadedError`.
   * @default 10000
   */
  readonly outstandingMax?: number;
  /**
   * Messages waiting to be handed to the socket.
   * @default 10000
   */
  readonly sendQueueMax?: number;
  /**
   * CURVE security for a broker started with `curve`: the broker's public key and this
   * client's key pair (its public key must be on the broker's allow-list). The same keys are
   * used for every endpoint in `endpoints`.
   * @default undefined (plain TCP)
   */
  readonly curve?: CurveOptions;
}

/** Client options with every default filled in; `curve` is kept without its secret key. */
export type ResolvedClientOptions = Required<Omit<ClientOptions, 'curve'>> & {
  readonly curve: ResolvedCurve | undefined;
};

/** The client's defaults, in one place. */
export function clientDefaults(): Omit<ResolvedClientOptions, 'endpoints'> {
  return {
    curve: undefined,
    mode: 'correlated',
    timeoutMs: 2500,
    attemptsMax: 3,
    outstandingMax: 10_000,
    sendQueueMax: 10_000,
  };
}

/** Fills in defaults and validates; throws `InvalidBrokerOptionsError` listing every problem. */
export function resolveClientOptions(options: ClientOptions): ResolvedClientOptions {
  const check = new OptionProblems('client');
  const resolved: ResolvedClientOptions = {
    ...clientDefaults(),
    ...stripUndefined(options),
    endpoints: options.endpoints,
    curve: checkPeerCurve(check, options.curve),
  };
  if (!Array.isArray(resolved.endpoints) || resolved.endpoints.length === 0) {
    check.check(false, 'endpoints must be a non-empty array of broker endpoints');
  } else {
    resolved.endpoints.forEach((endpoint, index) => check.endpoint(`endpoints[${index}]`, endpoint));
  }
  check.check(
    resolved.mode === 'correlated' || resolved.mode === 'rfc7',
    `mode must be "correlated" or "rfc7" (got ${String(resolved.mode)})`,
  );
  check.integer('timeoutMs', resolved.timeoutMs, 1);
  check.integer('attemptsMax', resolved.attemptsMax, 1);
  check.integer('outstandingMax', resolved.outstandingMax, 1);
  check.integer('sendQueueMax', resolved.sendQueueMax, 1);
  check.throwIfAny();
  return { ...resolved, endpoints: [...resolved.endpoints] };
}
