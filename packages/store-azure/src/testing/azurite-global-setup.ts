import { startAzurite } from './azurite-process.js';

/** The key under which {@link setup} provides Azurite's port to tests (`inject(AZURITE_PORT_KEY)`). */
export const AZURITE_PORT_KEY = 'azuriteBlobPort';

/** What a Vitest global setup receives, reduced to what this one uses. */
export interface GlobalSetupProject {
  provide(key: typeof AZURITE_PORT_KEY, value: number): void;
}

/**
 * Vitest `globalSetup`: starts one in-memory Azurite on a free loopback port for the whole test
 * run, provides the port as `azuriteBlobPort`, and stops exactly that child at teardown.
 *
 * @example
 * // vitest.config.ts
 * test: { globalSetup: [fileURLToPath(new URL('./src/testing/azurite-global-setup.ts', import.meta.url))] }
 * // in a test
 * const port = inject('azuriteBlobPort');
 */
export default async function setup(project: GlobalSetupProject): Promise<() => Promise<void>> {
  const azurite = await startAzurite();
  project.provide(AZURITE_PORT_KEY, azurite.port);
  return () => azurite.stop();
}
