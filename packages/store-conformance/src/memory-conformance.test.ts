import { MemoryLog, createMemoryStorage } from '@sluice/store';
import { describeStorageConformance } from './index.js';

// The reference backend runs the suite exactly as every other backend does.
describeStorageConformance({
  name: 'memory',
  createLocation: async () => {
    const log = new MemoryLog();
    return {
      storage: (options) => createMemoryStorage({ log, fsync: options?.fsync }),
      appendRaw: async (bytes) => {
        const joined = new Uint8Array(log.tail.length + bytes.length);
        joined.set(log.tail);
        joined.set(bytes, log.tail.length);
        log.tail = joined;
      },
      destroy: async () => undefined,
    };
  },
});
