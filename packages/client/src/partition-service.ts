/**
 * How partitions are named on the broker: each partition is the MDP service
 * `sluice.partition.<name>`, registered by the node that hosts it with every broker.
 */

/** Prefix of every partition's MDP service name. */
export const PARTITION_SERVICE_PREFIX = 'sluice.partition.';

/**
 * What a partition name may be: 1-100 characters of letters, digits, `.`, `_` and `-`,
 * starting with a letter or digit. It becomes part of an MDP service name and of file paths
 * (`{partition}` in a location), so nothing that needs escaping in either is allowed.
 */
export const PARTITION_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** True when `name` is a valid partition name (see {@link PARTITION_NAME_PATTERN}). */
export function isValidPartitionName(name: unknown): name is string {
  return typeof name === 'string' && PARTITION_NAME_PATTERN.test(name);
}

/**
 * The MDP service a partition is served as.
 *
 * @example
 * partitionServiceName('bank-1') // 'sluice.partition.bank-1'
 */
export function partitionServiceName(partition: string): string {
  return PARTITION_SERVICE_PREFIX + partition;
}

/** Prefix of the services nodes serve subscriptions on. */
export const SUBSCRIBE_SERVICE_PREFIX = 'sluice.subscribe.';

/**
 * The MDP service a partition's subscriptions are served on, `sluice.subscribe.<name>`: its
 * own worker connections, so subscribers waiting for commits never hold the ones appends use.
 */
export function subscribeServiceName(partition: string): string {
  return SUBSCRIBE_SERVICE_PREFIX + partition;
}
