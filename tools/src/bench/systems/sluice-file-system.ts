import { join } from 'node:path';
import { createFileStorage } from '@sluice/store-file';
import type { BenchSystem } from '../bench-system.js';
import { eventLogSession } from '../event-log-session.js';
import { openPartitionEventLog } from './partition-event-log.js';

/** Sluice's partition engine on the file store, fdatasync before every acknowledgement. */
export const sluiceFileSystem: BenchSystem = {
  id: 'sluice-file',
  label: 'Sluice file store',
  group: 'sluice',
  configuration: 'one partition, 64 MiB preallocated segments, group commit, fsync: "commit"',
  durability: 'fdatasync before each append resolves: survives power loss',
  async setup(context) {
    return eventLogSession({
      open: (name) => openPartitionEventLog(createFileStorage({ directory: join(context.directory, name), fsync: 'commit' }), name),
    });
  },
};

/**
 * The same, with a command id stamped on every append as the store client does (a fresh
 * UUID, recorded and indexed): the embedded row the rows through the broker compare with.
 */
export const sluiceFileCommandIdSystem: BenchSystem = {
  id: 'sluice-file-ids',
  label: 'Sluice file store, a command id per append',
  group: 'sluice',
  configuration: 'one partition, 64 MiB preallocated segments, group commit, fsync: "commit", a crypto.randomUUID() command id per append (as the store client stamps)',
  durability: 'fdatasync before each append resolves: survives power loss',
  async setup(context) {
    return eventLogSession({
      open: (name) => openPartitionEventLog(createFileStorage({ directory: join(context.directory, name), fsync: 'commit' }), name, { commandIds: true }),
    });
  },
};
