import type { PartitionStorage } from './storage.js';

/**
 * Test helper: `inner` with some members replaced, for tests that count, gate, delay or hide
 * storage calls. A member named in `overrides` is the override (`undefined` hides it); every
 * other member is the inner storage's own, its methods bound to it.
 *
 * @example
 * const storage = overrideStorage(inner, { sync: async () => (await gate, inner.sync()) });
 */
export function overrideStorage<S extends PartitionStorage>(inner: S, overrides: { readonly [K in keyof S]?: S[K] | undefined }): S {
  return new Proxy(inner, {
    get: (target, key) => {
      if (Object.prototype.hasOwnProperty.call(overrides, key)) return (overrides as Record<PropertyKey, unknown>)[key];
      const value = Reflect.get(target, key) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
