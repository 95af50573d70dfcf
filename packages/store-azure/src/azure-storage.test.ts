import { describeStorageConformance } from '@sluice/store-conformance';
import { createAzureStorage } from './index.js';
import { appendRawToLastBlob, createTestContainer } from './testing/azurite-context.fixture.js';

// The shared suite, unchanged, against Azurite (one fresh container per test). Every fsync
// policy is passed through: Azure accepts it and stores as `commit` (appendBlock is durable once
// acknowledged), so each policy's run checks the same behaviour under that policy's name.
describeStorageConformance({
  name: 'azure',
  createLocation: async () => {
    const container = await createTestContainer();
    return {
      storage: (options) => createAzureStorage({ connectionString: container.connectionString, container: container.name, prefix: 'partition', fsync: options?.fsync }),
      appendRaw: (bytes) => appendRawToLastBlob(container.client, 'partition', bytes),
      destroy: () => container.destroy(),
    };
  },
});
