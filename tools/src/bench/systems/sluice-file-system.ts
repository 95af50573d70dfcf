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
