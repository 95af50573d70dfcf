/**
 * The `heartbeats` and `limits` sections of `sluice.json`. Every key is optional: a key left
 * out takes the component's own default (`brokerDefaults()` of `@sluice/majordomo`,
 * `nodeDefaults()` of `@sluice/node`, `storeClientDefaults()` of `@sluice/client`), and the
 * `sluice` command's flags override the file. The schema only checks that each value is an
 * integer in range; the components check how values relate to each other.
 */

/** Heartbeat settings shared by brokers and nodes (RFC 7: "agreed-upon"). */
export interface HeartbeatsConfig {
  /** Interval of HEARTBEATs between brokers and workers. */
  readonly intervalMs?: number | undefined;
  /** A peer silent for interval × liveness is dead. */
  readonly liveness?: number | undefined;
  /**
   * How long a broker waits for a reply from a worker that is processing a request before it
   * takes the worker as dead (a reference worker sends no heartbeats while it works).
   */
  readonly busyTimeoutMs?: number | undefined;
}

/** Limits of `sluice broker`. */
export interface BrokerLimitsConfig {
  readonly serviceQueueMax?: number | undefined;
  readonly queuedRequestsMax?: number | undefined;
  readonly requestExpiryMs?: number | undefined;
  readonly servicesMax?: number | undefined;
  readonly workersMax?: number | undefined;
  readonly deliveriesMax?: number | undefined;
  readonly frameBytesMax?: number | undefined;
  readonly messageFramesMax?: number | undefined;
  readonly sendQueueMax?: number | undefined;
  readonly clientInFlightMax?: number | undefined;
  readonly requestBytesMax?: number | undefined;
}

/** Limits of `sluice node`. */
export interface NodeLimitsConfig {
  readonly concurrency?: number | undefined;
  readonly pageBytesMax?: number | undefined;
  readonly pageEventsMax?: number | undefined;
  readonly drainTimeoutMs?: number | undefined;
  readonly reconnectDelayMs?: number | undefined;
  readonly subscribeConcurrency?: number | undefined;
  readonly subscribeWaitMsMax?: number | undefined;
  readonly reopenDelayMs?: number | undefined;
  readonly reopenDelayMaxMs?: number | undefined;
  readonly reopenAttemptsMax?: number | undefined;
}

/** Limits of clients built from the config (the SDK, `sluice append/read/head/tail`). */
export interface ClientLimitsConfig {
  readonly timeoutMs?: number | undefined;
  readonly outstandingMax?: number | undefined;
  readonly retriesMax?: number | undefined;
  readonly requestBytesMax?: number | undefined;
}

/** The `limits` section. */
export interface LimitsConfig {
  readonly broker: BrokerLimitsConfig;
  readonly node: NodeLimitsConfig;
  readonly client: ClientLimitsConfig;
}

/** `key → [minimum, maximum]` of each section, in the order the README lists them. */
export const HEARTBEAT_KEYS: Readonly<Record<keyof HeartbeatsConfig, readonly [number, number]>> = {
  intervalMs: [1, 3_600_000],
  liveness: [1, 1000],
  busyTimeoutMs: [1, 86_400_000],
};
export const BROKER_LIMIT_KEYS: Readonly<Record<keyof BrokerLimitsConfig, readonly [number, number]>> = {
  serviceQueueMax: [0, 100_000_000],
  queuedRequestsMax: [0, 100_000_000],
  requestExpiryMs: [1, 86_400_000],
  servicesMax: [1, 1_000_000],
  workersMax: [1, 1_000_000],
  deliveriesMax: [1, 100],
  frameBytesMax: [1, 2 ** 31 - 1],
  messageFramesMax: [4, 1_000_000],
  sendQueueMax: [1, 100_000_000],
  clientInFlightMax: [1, 2 ** 30],
  requestBytesMax: [1, Number.MAX_SAFE_INTEGER],
};
export const NODE_LIMIT_KEYS: Readonly<Record<keyof NodeLimitsConfig, readonly [number, number]>> = {
  concurrency: [1, 1024],
  pageBytesMax: [1024, 0xffff_ffff],
  pageEventsMax: [1, 0xffff_ffff],
  drainTimeoutMs: [0, 3_600_000],
  reconnectDelayMs: [0, 3_600_000],
  subscribeConcurrency: [1, 1024],
  subscribeWaitMsMax: [1, 3_600_000],
  reopenDelayMs: [0, 3_600_000],
  reopenDelayMaxMs: [0, 86_400_000],
  reopenAttemptsMax: [0, 1_000_000],
};
export const CLIENT_LIMIT_KEYS: Readonly<Record<keyof ClientLimitsConfig, readonly [number, number]>> = {
  timeoutMs: [1, 3_600_000],
  outstandingMax: [1, 100_000_000],
  retriesMax: [0, 100],
  requestBytesMax: [1024, 2 ** 31 - 1],
};
