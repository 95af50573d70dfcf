import type { CommandMessage, CommandSender } from '@sluice/subscriptions';
import { CrossPartitionMessageError, PartitionUnavailableError } from './errors.js';
import type { CommandOutcome } from './handler-host.js';

/** Delivers a command message to the partition of its recipients and resolves with the outcome. */
export interface CommandRouter extends CommandSender {
  send(message: CommandMessage): Promise<CommandOutcome>;
  /** The partition a recipient lives in. */
  partitionOf(recipient: string): string;
}

/** What the in-process router needs of a partition's command host. */
export interface CommandExecutor {
  readonly isAvailable: boolean;
  execute(message: CommandMessage): Promise<CommandOutcome>;
}

/** 32-bit FNV-1a of a string's UTF-16 code units: stable across processes and versions. */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * Picks a recipient's partition by hashing its id over the partition names (sorted, so every
 * process agrees). Changing the set of partitions moves entities: repartitioning is a
 * separate, explicit operation.
 */
export function hashPartitioner(partitions: readonly string[]): (recipient: string) => string {
  if (partitions.length === 0) throw new RangeError('[sluice/handlers] hashPartitioner needs at least one partition name');
  const names = [...partitions].sort();
  return (recipient) => names[fnv1a(recipient) % names.length];
}

/** Options of {@link createInProcessRouter}. */
export interface InProcessRouterOptions {
  /** Partition name → its host. Hosts can be detached and attached later (a restart). */
  readonly hosts: ReadonlyMap<string, CommandExecutor> | Readonly<Record<string, CommandExecutor>>;
  /** @default hashPartitioner(names of hosts) */
  readonly partitionOf?: (recipient: string) => string;
}

/** An in-process router that can have hosts attached and detached. */
export interface InProcessRouter extends CommandRouter {
  attach(partition: string, host: CommandExecutor): void;
  detach(partition: string): void;
}

/**
 * Routes messages to handler hosts in this process (a map of partition name → host). A
 * remote router (through the client SDK and the broker) implements the same
 * {@link CommandRouter} interface.
 *
 * @example
 * const router = createInProcessRouter({ hosts: { 'bank-0': host0, 'bank-1': host1 } });
 * await router.send({ id: 'open-7', commands: [{ recipient: 'account-7', command: { type: 'OpenAccount' } }] });
 */
export function createInProcessRouter(options: InProcessRouterOptions): InProcessRouter {
  const hosts = new Map<string, CommandExecutor>(options.hosts instanceof Map ? options.hosts : Object.entries(options.hosts));
  const partitionOf = options.partitionOf ?? hashPartitioner([...hosts.keys()]);
  return {
    partitionOf,
    attach(partition, host) {
      hosts.set(partition, host);
    },
    detach(partition) {
      hosts.delete(partition);
    },
    send(message) {
      const commands = message.commands;
      const partition = partitionOf(commands[0]?.recipient ?? '');
      for (let i = 1; i < commands.length; i++) {
        const other = partitionOf(commands[i].recipient);
        if (other !== partition) {
          return Promise.reject(new CrossPartitionMessageError(message.id, [...new Set(commands.map((c) => partitionOf(c.recipient)))]));
        }
      }
      const host = hosts.get(partition);
      if (host === undefined || !host.isAvailable) return Promise.reject(new PartitionUnavailableError(partition, message.id));
      return host.execute(message);
    },
  };
}
