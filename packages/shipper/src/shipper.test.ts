import { MemoryLog, StorageError, createMemoryStorage, openPartition, type Partition, type PartitionStorage } from '@sluice/store';
import { afterEach, describe, expect, it } from 'vitest';
import { createShipper, isShipperError, type Shipper, type ShipperAlert, type ShipperOptions } from './index.js';

const te = new TextEncoder();
const td = new TextDecoder();

async function fill(p: Partition, from: number, to: number): Promise<void> {
  await Promise.all(Array.from({ length: to - from + 1 }, (_, i) => p.append({ streamId: `s-${(from + i) % 4}`, events: [{ type: 'E', data: te.encode(`v${from + i}`) }] })));
}

/** Every payload of a log, by reopening it as a partition (a shipped log opens like any other). */
async function payloadsOf(log: MemoryLog): Promise<string[]> {
  const p = await openPartition({ storage: createMemoryStorage({ log }) });
  const out: string[] = [];
  for await (const e of p.read()) out.push(td.decode(e.payload));
  await p.close();
  return out;
}

const bytesOf = (log: MemoryLog): number[][] => log.batches.map((b) => Array.from(b.bytes));

/**
 * A target that can be taken down: while `down`, open/write/sync/head reject with Unavailable
 * (as a network failure would), and every storage made while down fails its first use.
 */
function flakyTarget(log = new MemoryLog()): { log: MemoryLog; down: boolean; creates: number; createStorage: () => PartitionStorage } {
  const t = {
    log,
    down: false,
    creates: 0,
    createStorage: (): PartitionStorage => {
      t.creates++;
      const inner = createMemoryStorage({ log });
      const failing = new Set(['open', 'write', 'sync', 'head']);
      return new Proxy(inner, {
        get: (target, key) => {
          const value = Reflect.get(target, key) as unknown;
          if (typeof value !== 'function') return value;
          const bound = (value as (...a: unknown[]) => unknown).bind(target);
          if (!failing.has(String(key))) return bound;
          return (...args: unknown[]) => (t.down ? Promise.reject(new StorageError('Unavailable', `target unreachable (${String(key)})`)) : bound(...args));
        },
      });
    },
  };
  return t;
}

const shippers: Shipper[] = [];
const partitions: Partition[] = [];
afterEach(async () => {
  for (const s of shippers.splice(0)) await s.stop();
  for (const p of partitions.splice(0)) await p.close();
});

async function source(): Promise<{ partition: Partition; storage: PartitionStorage; log: MemoryLog }> {
  const log = new MemoryLog();
  const storage = createMemoryStorage({ log });
  const partition = await openPartition({ storage, name: 'payments' });
  partitions.push(partition);
  return { partition, storage, log };
}

function ship(options: Partial<ShipperOptions> & Pick<ShipperOptions, 'source' | 'targets'>): { shipper: Shipper; alerts: ShipperAlert[] } {
  const shipper = createShipper({ partition: 'payments', retry: { initialDelayMs: 5, maxDelayMs: 50 }, lagCheckMs: 20, ...options });
  shippers.push(shipper);
  const alerts: ShipperAlert[] = [];
  shipper.on('alert', (a) => alerts.push(a));
  return { shipper: shipper.start(), alerts };
}

describe('shipper: invariant 7, a target never skips, reorders or duplicates', () => {
  it('ships every committed batch to every target byte for byte, and a shipped log opens as a partition', async () => {
    const src = await source();
    await fill(src.partition, 1, 40);
    const targets = [new MemoryLog(), new MemoryLog()];
    const { shipper } = ship({ source: src.storage, targets: targets.map((log, i) => ({ label: `t${i}`, createStorage: () => createMemoryStorage({ log }) })) });
    await fill(src.partition, 41, 100);
    await shipper.waitFor(100, { timeoutMs: 10_000 });
    await shipper.stop();
    const committed: string[] = [];
    for await (const e of src.partition.read()) committed.push(td.decode(e.payload));
    expect(committed).toHaveLength(100);
    for (const t of targets) {
      expect(bytesOf(t)).toEqual(bytesOf(src.log));
      expect(await payloadsOf(t)).toEqual(committed);
    }
    expect(shipper.status().map((s) => [s.state, s.head.lastSeq, s.lagSeqs])).toEqual([
      ['stopped', 100, 0],
      ['stopped', 100, 0],
    ]);
  });

  it('resumes each target from its own head', async () => {
    const src = await source();
    await fill(src.partition, 1, 10);
    const behind = new MemoryLog();
    const first = ship({ source: src.storage, targets: [{ label: 'behind', createStorage: () => createMemoryStorage({ log: behind }) }] });
    await first.shipper.waitFor(10, { timeoutMs: 5000 });
    await first.shipper.stop();
    await fill(src.partition, 11, 30);
    const fresh = new MemoryLog();
    const { shipper } = ship({
      source: src.storage,
      targets: [
        { label: 'behind', createStorage: () => createMemoryStorage({ log: behind }) },
        { label: 'fresh', createStorage: () => createMemoryStorage({ log: fresh }) },
      ],
    });
    await shipper.waitFor(30, { timeoutMs: 5000 });
    expect(bytesOf(behind)).toEqual(bytesOf(src.log));
    expect(bytesOf(fresh)).toEqual(bytesOf(src.log));
  });

  it('refuses a target holding a different log, with an alert, and never writes to it; others go on', async () => {
    const src = await source();
    await fill(src.partition, 1, 5);
    const other = new MemoryLog();
    const p = await openPartition({ storage: createMemoryStorage({ log: other }) });
    await p.append({ streamId: 'x', events: [{ type: 'E', data: te.encode('another history') }] });
    await p.close();
    const before = bytesOf(other);
    const good = new MemoryLog();
    const { shipper, alerts } = ship({
      source: src.storage,
      targets: [
        { label: 'foreign', createStorage: () => createMemoryStorage({ log: other }) },
        { label: 'good', createStorage: () => createMemoryStorage({ log: good }) },
      ],
    });
    await shipper.waitFor(5, { quorum: 1, timeoutMs: 5000 });
    await expect.poll(() => shipper.status()[0].state).toBe('refused');
    expect(alerts.find((a) => a.kind === 'diverged')).toMatchObject({ target: 'foreign', partition: 'payments' });
    expect(alerts.find((a) => a.kind === 'diverged')?.message).toMatch(/target "foreign" holds a different log: at seq 1 .*refusing to ship into it/);
    expect(bytesOf(other)).toEqual(before);
    // A quorum of both can never be reached now: waitFor says so instead of hanging.
    const error = await shipper.waitFor(5, { quorum: 2 }).catch((e: unknown) => e);
    expect(isShipperError(error) && error.reason).toBe('Quorum');
  });

  it('refuses a target that holds seqs the source does not (the source lost them)', async () => {
    const src = await source();
    for (let i = 1; i <= 3; i++) await fill(src.partition, i, i);
    const ahead = new MemoryLog();
    const first = ship({ source: src.storage, targets: [{ label: 'ahead', createStorage: () => createMemoryStorage({ log: ahead }) }] });
    await first.shipper.waitFor(3, { timeoutMs: 5000 });
    await first.shipper.stop();
    // The source loses its last commits, as a log cut by an operator would.
    await src.partition.close();
    partitions.length = 0;
    const cut = createMemoryStorage({ log: src.log });
    await cut.open();
    await cut.truncate(src.log.lastSeqs[0], { operatorReason: 'test: lose the tail' });
    const { shipper, alerts } = ship({ source: cut, targets: [{ label: 'ahead', createStorage: () => createMemoryStorage({ log: ahead }) }] });
    await expect.poll(() => shipper.status()[0].state).toBe('refused');
    expect(alerts.map((a) => a.kind)).toContain('ahead');
    await shipper.stop();
    await cut.close();
  });
});

describe('shipper: a target that is down', () => {
  it('retries with backoff, alerts on the outage and on lag, and delivers everything exactly once, in order, once it is back', async () => {
    const src = await source();
    const flaky = flakyTarget();
    const steady = new MemoryLog();
    const { shipper, alerts } = ship({
      source: src.storage,
      alertLagMs: 60_000,
      alertLagSeqs: 20,
      targets: [
        { label: 'flaky', createStorage: flaky.createStorage },
        { label: 'steady', createStorage: () => createMemoryStorage({ log: steady }) },
      ],
    });
    await fill(src.partition, 1, 10);
    await shipper.waitFor(10, { timeoutMs: 5000 });
    flaky.down = true;
    for (let i = 11; i <= 60; i += 10) await fill(src.partition, i, i + 9);
    await shipper.waitFor(60, { quorum: 1, timeoutMs: 5000 });
    await expect.poll(() => alerts.some((a) => a.kind === 'lag' && a.target === 'flaky'), { timeout: 5000 }).toBe(true);
    expect(alerts.find((a) => a.kind === 'target-down')).toMatchObject({ target: 'flaky' });
    expect(alerts.find((a) => a.kind === 'target-down')?.message).toMatch(/target "flaky" failed at seq \d+: .*target unreachable/);
    const status = shipper.status()[0];
    expect(status.state).toBe('retrying');
    expect(status.lagSeqs).toBeGreaterThan(20);
    await expect.poll(() => flaky.creates).toBeGreaterThan(3); // it kept trying
    flaky.down = false;
    await shipper.waitFor(60, { timeoutMs: 5000 });
    await expect.poll(() => alerts.map((a) => a.kind), { timeout: 5000 }).toEqual(expect.arrayContaining(['target-recovered', 'lag-cleared']));
    expect(bytesOf(flaky.log)).toEqual(bytesOf(src.log));
    expect(bytesOf(steady)).toEqual(bytesOf(src.log));
  });

  it('waits for a target unreachable at start-up (alerting) and starts shipping when it comes up', async () => {
    const src = await source();
    await fill(src.partition, 1, 5);
    const flaky = flakyTarget();
    flaky.down = true;
    const log: string[] = [];
    const { shipper, alerts } = ship({ source: src.storage, targets: [{ label: 'late', createStorage: flaky.createStorage }], log: (e) => log.push(`${e.level} ${e.message}`) });
    await expect.poll(() => alerts.map((a) => a.kind)).toContain('target-down');
    expect(log.some((l) => l.startsWith('warn') && l.includes('"late"'))).toBe(true);
    flaky.down = false;
    await shipper.waitFor(5, { timeoutMs: 5000 });
    expect(bytesOf(flaky.log)).toEqual(bytesOf(src.log));
  });

  it('moves to an alternate after failoverAfterMs, which resumes from its own head', async () => {
    const src = await source();
    await fill(src.partition, 1, 8);
    const primary = flakyTarget();
    primary.down = true;
    const alternate = new MemoryLog();
    const { shipper, alerts } = ship({
      source: src.storage,
      failoverAfterMs: 50,
      targets: [{ label: 'primary', createStorage: primary.createStorage, alternates: [{ label: 'alternate', createStorage: () => createMemoryStorage({ log: alternate }) }] }],
    });
    const [held] = await shipper.waitFor(8, { timeoutMs: 5000 });
    expect(held).toMatchObject({ target: 'primary', active: 'alternate' });
    expect(alerts.find((a) => a.kind === 'failover')?.message).toMatch(/target "primary" has been failing for 50 ms: shipping to alternate "alternate"/);
    expect(bytesOf(alternate)).toEqual(bytesOf(src.log));
  });

  it('reports the recovery point in seconds: the age of the oldest commit a target lacks', async () => {
    let now = 1_000_000;
    const log = new MemoryLog();
    const storage = createMemoryStorage({ log });
    const partition = await openPartition({ storage, clock: () => now });
    partitions.push(partition);
    const flaky = flakyTarget();
    flaky.down = true;
    const { shipper } = ship({ source: storage, clock: () => now, targets: [{ label: 'down', createStorage: flaky.createStorage }] });
    await fill(partition, 1, 3);
    now += 7000;
    await expect.poll(() => shipper.status()[0]).toMatchObject({ lagSeqs: 3, lagMs: 7000 });
  });
});

describe('shipper options', () => {
  it('lists every problem at once', () => {
    expect(() => createShipper({ source: {} as never, targets: [{ label: '', createStorage: 'x' as never }], retry: { jitter: 2 }, alertLagMs: -1 })).toThrow(
      /source must be a StorageReader.*createStorage must be a function.*needs a non-empty label.*retry.jitter must be in \[0, 1\).*alertLagMs must be a number of at least 0/,
    );
  });

  it('refuses a label used twice', () => {
    const s = createMemoryStorage();
    expect(() => createShipper({ source: s, targets: [{ label: 'a', createStorage: () => s }, { label: 'a', createStorage: () => s }] })).toThrow(/label "a" is used twice/);
  });
});
