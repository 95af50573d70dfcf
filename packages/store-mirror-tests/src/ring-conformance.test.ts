import { MemoryLog, createMemoryStorage, createRingStorage, type RingMode } from '@sluice/store';
import { describeStorageConformance } from '@sluice/store-conformance';

// A ring location in front of a memory location passes the suite unchanged in both modes; a
// small ring (64 KiB) makes the suite's larger tests wrap it and wait for the drainer.
for (const mode of ['acknowledge', 'cache'] as const satisfies readonly RingMode[]) {
  describeStorageConformance({
    name: `ring(${mode}, memory)`,
    createLocation: async () => {
      const log = new MemoryLog();
      return {
        storage: (options) => createRingStorage({ mode, capacityBytes: 64 * 1024, durable: createMemoryStorage({ log, fsync: options?.fsync }) }),
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
}
