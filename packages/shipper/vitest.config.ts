import { fileURLToPath } from 'node:url';
import { defineProject, mergeConfig } from 'vitest/config';
import { sharedConfig } from '../../vitest.shared.js';

export default mergeConfig(
  sharedConfig,
  defineProject({
    test: {
      name: 'shipper',
      // One in-memory Azurite on a free loopback port for the whole run (store-azure's test setup); tests `inject` its port.
      globalSetup: [fileURLToPath(new URL('../store-azure/src/testing/azurite-global-setup.ts', import.meta.url))],
    },
  }),
);
