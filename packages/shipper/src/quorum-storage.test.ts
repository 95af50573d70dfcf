import { MemoryLog, PartitionFaultedError, StorageError, createMemoryStorage, openPartition, type PartitionStorage } from '@sluice/store';
import { describe, expect, it } from 'vitest';
import { createQuorumStorage } from './index.js';

const te = new TextEncoder();

/** A memory target that can be taken down (every call rejects with Unavailable while down). */
function target(label: string): { label: string; log: MemoryLog; down: boolean; createStorage: () => PartitionStorage } {
  const t = {
    label,
    log: new MemoryLog(),
    down: false,
    createStorage: (): PartitionStorage => {
      const inner = createMemoryStorage({ log: t.log });
      return new Proxy(inner, {
        get: (o, k) => {
          const v = Reflect.get(o, k) as unknown;
          if (typeof v !== 'function') return v;
          const bound = (v as (...a: unknown[]) => unknown).bind(o);
          return ['open', 'write', 'sync', 'head'].includes(String(k)) ? (...a: unknown[]) => (t.down ? Promise.reject(new StorageError('Unavailable', `${label} unreachable`)) : bound(...a)) : bound;
        },
      });
    },
  };
  return t;
}

describe('synchronous remote mode (createQuorumStorage)', () => {
  it('acknowledges a commit only once a quorum of targets holds it durably', async () => {
    const targets = [target('west'), target('north'), target('east')];
    targets[2].down = true;
    const storage = createQuorumStorage({ storage: createMemoryStorage(), partition: 'payments', targets, quorum: 2, retry: { initialDelayMs: 5, maxDelayMs: 20 } });
    const p = await openPartition({ storage, name: 'payments' });
    for (let i = 0; i < 20; i++) {
      const r = await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode(`v${i}`) }] });
      // At the moment of the acknowledgement, at least two targets hold the commit.
      const holding = targets.filter((t) => (t.log.lastSeqs.at(-1) ?? 0) >= r.lastSeq && t.log.syncedCount === t.log.batches.length);
      expect(holding.length).toBeGreaterThanOrEqual(2);
    }
    expect(targets[2].log.batches).toHaveLength(0);
    const last = await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('last') }] });
    expect(last.reliability?.locations).toEqual(['memory']);
    expect(last.reliability?.targets?.length).toBeGreaterThanOrEqual(2);
    expect(last.reliability?.targets).not.toContain('east');
    targets[2].down = false;
    await storage.shipper.waitFor(21, { timeoutMs: 5000 });
    await p.close();
    for (const t of targets) expect(t.log.lastSeqs.at(-1)).toBe(21);
  });

  it('fails the commit (and faults the partition) when the quorum is not reached in time', async () => {
    const targets = [target('west'), target('north'), target('east')];
    const storage = createQuorumStorage({ storage: createMemoryStorage(), targets, quorum: 2, quorumTimeoutMs: 300, retry: { initialDelayMs: 5, maxDelayMs: 20 } });
    const p = await openPartition({ storage, name: 'payments' });
    await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('ok') }] });
    targets[0].down = true;
    targets[1].down = true;
    const error = await p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('lost quorum') }] }).catch((e: unknown) => e);
    expect(error).toMatchObject({ reason: 'Unavailable' });
    expect((error as Error).message).toMatch(/seq 2 is durable locally but not acknowledged: .*only 1 of the 2 targets needed hold seq 2 after 300 ms/);
    await expect(p.append({ streamId: 's', events: [{ type: 'E', data: te.encode('x') }] })).rejects.toBeInstanceOf(PartitionFaultedError);
    expect(p.lastSeq).toBe(1);
    await p.close();
  });

  it('refuses a quorum larger than the targets', () => {
    expect(() => createQuorumStorage({ storage: createMemoryStorage(), targets: [target('a')], quorum: 2 })).toThrow(/quorum must be an integer from 1 to 1/);
  });
});
