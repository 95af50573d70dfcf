import { describeStorageConformance } from '@sluice/store-conformance';
import { createAzureStorage } from './index.js';
import { appendRawToLastBlob, createTestContainer } from './testing/azurite-context.fixture.js';

// The shared suite, unchanged, against Azurite (one fresh container per test).
describeStorageConformance({
  name: 'azure',
  createLocation: async () => {
    const container = await createTestContainer();
    return {
      storage: () => createAzureStorage({ connectionString: container.connectionString, container: container.name, prefix: 'partition' }),
      appendRaw: (bytes) => appendRawToLastBlob(container.client, 'partition', bytes),
      destroy: () => container.destroy(),
    };
  },
});
