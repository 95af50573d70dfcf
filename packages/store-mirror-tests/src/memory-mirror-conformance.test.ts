import { MemoryLog, createMemoryStorage, createMirroredStorage } from '@sluice/store';
import { describeStorageConformance } from '@sluice/store-conformance';

// A mirror is a storage like any other: the suite runs unchanged against a mirror of two
// in-memory locations. A torn tail is appended to both copies (as a crash during a mirrored
// write leaves it), so each location's recovery and the mirror's comparison both run.
describeStorageConformance({
  name: 'mirror(memory, memory)',
  createLocation: async () => {
    const logs = [new MemoryLog(), new MemoryLog()];
    return {
      storage: (options) => createMirroredStorage({ locations: logs.map((log) => createMemoryStorage({ log, fsync: options?.fsync })) }),
      appendRaw: async (bytes) => {
        for (const log of logs) {
          const joined = new Uint8Array(log.tail.length + bytes.length);
          joined.set(log.tail);
          joined.set(bytes, log.tail.length);
          log.tail = joined;
        }
      },
      destroy: async () => undefined,
    };
  },
});

// The same with the raw tail on the second copy only, as a crash between the two writes of a
// mirrored batch leaves it: a torn tail is cut there, a whole sealed batch is copied to the first.
describeStorageConformance({
  name: 'mirror(memory, memory) tail on one copy',
  createLocation: async () => {
    const logs = [new MemoryLog(), new MemoryLog()];
    return {
      storage: (options) => createMirroredStorage({ locations: logs.map((log) => createMemoryStorage({ log, fsync: options?.fsync })) }),
      appendRaw: async (bytes) => {
        const log = logs[1];
        const joined = new Uint8Array(log.tail.length + bytes.length);
        joined.set(log.tail);
        joined.set(bytes, log.tail.length);
        log.tail = joined;
      },
      destroy: async () => undefined,
    };
  },
});
