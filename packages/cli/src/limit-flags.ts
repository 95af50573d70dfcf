import { BROKER_LIMIT_KEYS, HEARTBEAT_KEYS, NODE_LIMIT_KEYS } from '@sluice/config';
import { Option, type Command } from 'commander';
import { integerAtLeast } from './parse-options.js';

/**
 * Every limit and heartbeat setting of `sluice broker` and `sluice node` as a flag, named
 * after its `sluice.json` key (`serviceQueueMax` → `--service-queue-max`). A flag overrides
 * the config file, which overrides the component's default.
 */

/** `serviceQueueMax` → `service-queue-max`. */
export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

const HELP: Readonly<Record<string, string>> = {
  intervalMs: 'heartbeat interval in ms; brokers and nodes must agree',
  liveness: 'heartbeats missed before a peer is taken as dead',
  busyTimeoutMs: 'ms a worker silent while it holds a request may stay silent (reference workers send nothing while busy)',
  serviceQueueMax: 'requests queued per service',
  queuedRequestsMax: 'requests queued over all services',
  requestExpiryMs: 'ms before a queued request of a service without workers is answered 504',
  servicesMax: 'services known at once',
  workersMax: 'workers registered at once',
  deliveriesMax: 'times one request may be handed to a worker',
  frameBytesMax: 'largest message part accepted, in bytes',
  messageFramesMax: 'most frames in one message',
  sendQueueMax: 'messages waiting to be handed to the socket',
  clientInFlightMax: 'requests one client may have held by the broker at once',
  requestBytesMax: 'bytes of request bodies the broker holds at once',
  concurrency: 'requests each partition handles at once per broker',
  pageBytesMax: 'largest read reply, in bytes',
  pageEventsMax: 'most events in one read reply',
  drainTimeoutMs: 'longest wait on stop for requests being handled, in ms',
  reconnectDelayMs: 'ms before reconnecting to a silent broker',
  subscribeConcurrency: 'worker connections per partition per broker for subscriptions',
  subscribeWaitMsMax: 'longest a subscribe request waits for a commit, in ms',
  reopenDelayMs: 'first wait before reopening a faulted partition, in ms (doubles per failed attempt)',
  reopenDelayMaxMs: 'longest wait between reopen attempts, in ms',
  reopenAttemptsMax: 'reopen attempts after a fault before giving the partition up (0: never)',
};

/** The heartbeat flags: `--heartbeat-ms` (the interval, as before), `--heartbeat-liveness`, `--busy-timeout-ms`. */
export const HEARTBEAT_FLAGS: Readonly<Record<keyof typeof HEARTBEAT_KEYS, string>> = {
  intervalMs: 'heartbeat-ms',
  liveness: 'heartbeat-liveness',
  busyTimeoutMs: 'busy-timeout-ms',
};

function addIntegerFlags(command: Command, keys: Readonly<Record<string, readonly [number, number]>>, names: (key: string) => string): Command {
  for (const [key, [min]] of Object.entries(keys)) {
    const flag = `--${names(key)}`;
    command.addOption(new Option(`${flag} <n>`, HELP[key] ?? key).argParser(integerAtLeast(flag, min)));
  }
  return command;
}

/** Adds the broker's limit flags and the heartbeat flags. */
export function addBrokerLimitFlags(command: Command): Command {
  addIntegerFlags(command, HEARTBEAT_KEYS, (key) => HEARTBEAT_FLAGS[key as keyof typeof HEARTBEAT_FLAGS]);
  return addIntegerFlags(command, BROKER_LIMIT_KEYS, flagName);
}

/** Adds the node's limit flags and the heartbeat interval / liveness flags. */
export function addNodeLimitFlags(command: Command): Command {
  addIntegerFlags(command, { intervalMs: HEARTBEAT_KEYS.intervalMs, liveness: HEARTBEAT_KEYS.liveness }, (key) => HEARTBEAT_FLAGS[key as keyof typeof HEARTBEAT_FLAGS]);
  return addIntegerFlags(command, NODE_LIMIT_KEYS, flagName);
}

/** commander's property name of a flag: `--service-queue-max` → `serviceQueueMax`. */
export function flagProperty(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

/** The values given on the command line for `keys`, by key. */
export function givenFlags(
  flags: Readonly<Record<string, unknown>>,
  keys: Readonly<Record<string, unknown>>,
  names: (key: string) => string,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(keys)) {
    const value = flags[flagProperty(names(key))];
    if (typeof value === 'number') out[key] = value;
  }
  return out;
}
