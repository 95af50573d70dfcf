import { fileURLToPath } from 'node:url';
import { defineProject, mergeConfig } from 'vitest/config';
import { sharedConfig } from '../../vitest.shared.js';

export default mergeConfig(
  sharedConfig,
  defineProject({
    test: {
      name: 'store-azure',
      // One in-memory Azurite on a free loopback port for the whole run; tests `inject` its port.
      globalSetup: [fileURLToPath(new URL('./src/testing/azurite-global-setup.ts', import.meta.url))],
    },
  }),
);
