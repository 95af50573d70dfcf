import { afterEach, describe, expect, it, vi } from 'vitest';
import { Durability, describeLmdbDurability, durabilityFlags } from './durability.js';
import type { BatchDatabase, LmdbRoot } from './lmdb-env.js';

/** A stand-in environment: sync failures and slow flushes cannot be produced on demand by a real disk. */
function fakeEnvironment(): { root: LmdbRoot; batches: BatchDatabase; syncs: Array<(error?: Error) => void>; flush: () => void } {
  const syncs: Array<(error?: Error) => void> = [];
  let flushed: () => void = () => undefined;
  const batches = {
    get flushed() {
      return new Promise<void>((resolve) => {
        flushed = resolve;
      });
    },
  } as unknown as BatchDatabase;
  const root = { sync: (callback: (error?: Error) => void) => syncs.push(callback) } as unknown as LmdbRoot;
  return { root, batches, syncs, flush: () => flushed() };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('fsync policies on LMDB', () => {
  it('maps each policy onto lmdb-js flags and says what is durable', () => {
    expect(durabilityFlags({ kind: 'commit' })).toEqual({ overlappingSync: false, noSync: false });
    expect(durabilityFlags({ kind: 'interval', intervalMs: 100 })).toEqual({ overlappingSync: true, noSync: false });
    expect(durabilityFlags({ kind: 'none' })).toEqual({ overlappingSync: false, noSync: true });
    expect(describeLmdbDurability({ kind: 'commit' })).toMatch(/fdatasynced before sync\(\) resolves/);
    expect(describeLmdbDurability({ kind: 'interval', intervalMs: 100 })).toMatch(/forced every 100 ms/);
    expect(describeLmdbDurability({ kind: 'none' })).toMatch(/never forced/);
  });

  it('commit: acknowledges only once lmdb reports the commit flushed', async () => {
    const env = fakeEnvironment();
    const durability = new Durability({ kind: 'commit' }, env.root, env.batches);
    let acknowledged = false;
    const done = durability.afterCommit().then(() => {
      acknowledged = true;
    });
    await Promise.resolve();
    expect(acknowledged).toBe(false);
    env.flush();
    await done;
    expect(acknowledged).toBe(true);
    await durability.close(true);
    expect(env.syncs).toHaveLength(0);
  });

  it('interval: acknowledges at commit, forces a sync each interval only when something was committed, and stops appends after a failed sync', async () => {
    vi.useFakeTimers();
    const env = fakeEnvironment();
    const durability = new Durability({ kind: 'interval', intervalMs: 100 }, env.root, env.batches);
    await durability.afterCommit();
    await vi.advanceTimersByTimeAsync(100);
    expect(env.syncs).toHaveLength(1);
    env.syncs[0]();
    await vi.advanceTimersByTimeAsync(300);
    expect(env.syncs).toHaveLength(1); // nothing new committed: no sync
    await durability.afterCommit();
    await vi.advanceTimersByTimeAsync(100);
    expect(env.syncs).toHaveLength(2);
    const failure = Object.assign(new Error('Input/output error'), { code: 5 });
    env.syncs[1](failure);
    await vi.advanceTimersByTimeAsync(0);
    await expect(durability.afterCommit()).rejects.toBe(failure);
    await durability.close(false);
  });

  it('none and interval: force what was written to disk on close', async () => {
    for (const policy of [{ kind: 'none' } as const, { kind: 'interval', intervalMs: 60_000 } as const]) {
      const env = fakeEnvironment();
      const durability = new Durability(policy, env.root, env.batches);
      await durability.afterCommit();
      const closing = durability.close(true);
      await vi.waitFor(() => expect(env.syncs).toHaveLength(1));
      env.syncs[0]();
      await closing;
    }
  });
});
