import { tmpdir } from 'node:os';
import { CRC_BYTES, EVENT_HEADER_BYTES, MARKER_BYTES } from '@sluice/framing';
import { SEGMENT_BYTES_MAX, SEGMENT_HEADER_BYTES } from '@sluice/store-file';
import { expect, it } from 'vitest';
import { SystemSkippedError, type BenchSystem } from './bench-system.js';
import { formatCompareReport, runCompareBench } from './compare-bench.js';
import { EVENT_TYPE, STREAMS } from './event-log-session.js';
import { BENCH_SYSTEMS } from './systems/registry.js';
import { zeroFillSegmentBytes } from './systems/sluice-file-system.js';
import { FRAME_OVERHEAD_BYTES, SCENARIO_BYTES_MAX, workload } from './workload.js';

it('caps every append scenario of the full workload at the bytes the limit rows write, so the rows of a scenario write alike', () => {
  const scenarios = workload('full');
  for (const s of scenarios) {
    if (s.kind !== 'append') continue;
    expect(s.events * (s.payloadBytes + FRAME_OVERHEAD_BYTES), s.id).toBeLessThanOrEqual(SCENARIO_BYTES_MAX);
  }
  const events = (id: string) => {
    const s = scenarios.find((x) => x.id === id);
    return s?.kind === 'append' ? s.events : undefined;
  };
  // 1 KiB × 5 M would be 5.5 GB; 100 B batches of 100 stay as they were.
  expect(events('1KiB-batch-1000')).toBe(Math.floor(SCENARIO_BYTES_MAX / (1024 + FRAME_OVERHEAD_BYTES)));
  expect(events('100B-batch-100')).toBe(2_000_000);
});

it('gives the zero-filled row a segment its scenario never fills halfway, where the next one would be zero-filled during the run', () => {
  // The file store's frame of a bench event (the longest stream id) is within the workload's
  // frame overhead, with its share of a marker in batches of 100 or more.
  const frame = EVENT_HEADER_BYTES + `stream-${STREAMS - 1}`.length + EVENT_TYPE.length + CRC_BYTES;
  expect(frame + MARKER_BYTES / 100).toBeLessThanOrEqual(FRAME_OVERHEAD_BYTES);
  for (const s of workload('full')) {
    if (s.kind !== 'append') continue;
    const segment = zeroFillSegmentBytes(s);
    expect(segment, s.id).toBeLessThanOrEqual(SEGMENT_BYTES_MAX);
    // A marker per append, or per group of at least 100 events for the concurrent rows (many
    // appenders' events share a batch; a run that does start a second segment says so).
    const perEvent = s.payloadBytes + frame + MARKER_BYTES / (s.concurrent ? 100 : s.batch);
    // The segment's header, then the frames: never past half of the segment.
    expect(SEGMENT_HEADER_BYTES + s.events * perEvent, s.id).toBeLessThanOrEqual(segment / 2);
  }
});

// Smoke mode only: proves the comparative bench runs end to end and reports every system.
// Peers that are not installed here are skipped (installMissing: false: no apt-get in tests).
// No timing assertions anywhere.
it('runs every system through the smoke workload and reports each one', { timeout: 180_000 }, async () => {
  const result = await runCompareBench({ mode: 'smoke', directory: tmpdir(), installMissing: false });
  const scenarios = workload('smoke');

  // The Sluice file store ran every scenario: it is the baseline of every ratio.
  const file = result.rows.filter((r) => r.systemId === 'sluice-file');
  expect(file.map((r) => r.scenarioId)).toEqual(scenarios.map((s) => s.id));
  for (const r of file) {
    expect(r.status, `${r.scenarioId}: ${r.reason ?? ''}`).toBe('ok');
    expect(r.events).toBeGreaterThan(0);
    expect(r.eventsPerSecond).toBeGreaterThan(0);
    expect(r.fileStoreRatio).toBe(1);
  }

  // Every registered system is reported: measured per scenario, or skipped as a whole with a
  // reason. Nothing is silently dropped, and nothing failed.
  for (const system of BENCH_SYSTEMS) {
    const rows = result.rows.filter((r) => r.systemId === system.id);
    if (rows.length === 1 && rows[0].status === 'skipped') {
      expect(rows[0].reason).toMatch(/\w/);
      continue;
    }
    expect(rows.map((r) => r.scenarioId), system.id).toEqual(scenarios.map((s) => s.id));
    for (const r of rows) {
      expect(['ok', 'not-applicable'], `${system.id} ${r.scenarioId}: ${r.reason ?? ''}`).toContain(r.status);
      if (r.status === 'ok') {
        expect(r.events).toBeGreaterThan(0);
        expect(r.fileStoreRatio).toBeGreaterThan(0);
      } else expect(r.reason).toMatch(/\w/);
    }
  }
  // A catch-up read sees every event the batches-of-1000 scenario appended.
  for (const r of result.rows.filter((row) => row.status === 'ok' && row.scenarioId?.endsWith('catch-up'))) {
    const written = result.rows.find((w) => w.systemId === r.systemId && w.scenarioId === r.scenarioId?.replace('catch-up', 'batch-1000'));
    expect(r.events, r.systemId).toBe(written?.events);
  }

  // The JSON written by --out holds the same rows; the report has one table line per row.
  const json = JSON.parse(JSON.stringify(result)) as typeof result;
  expect(json.rows).toHaveLength(result.rows.length);
  expect(json.meta.mode).toBe('smoke');
  expect(json.targets).toHaveLength(22);
  // The bound of the sequential row through the broker is measured beside it.
  for (const size of ['100B', '1KiB']) {
    for (const id of ['broker-echo-fdatasync', 'relay-fdatasync']) {
      const bound = result.rows.find((r) => r.systemId === id && r.scenarioId === `${size}-batch-1`);
      expect(bound?.status, bound?.reason).toBe('ok');
    }
    const bound = result.targets.find((t) => t.target.startsWith(`${size}, sequential: its bound here`));
    expect(bound?.bound).toBe(true);
    expect(bound?.measured).toBeGreaterThan(0);
  }
  // The disk's limit is the faster of the two raw rows of this run, named in the target.
  for (const size of ['100B', '1KiB']) {
    const limit = result.targets.find((t) => t.target.startsWith(`${size}, batches of 1000: file store ÷ the disk's limit`));
    const raws = result.rows.filter((r) => (r.systemId === 'raw-fdatasync' || r.systemId === 'raw-fdatasync-sync') && r.scenarioId === `${size}-batch-1000`);
    const fastest = raws.reduce((a, b) => ((b.eventsPerSecond ?? 0) > (a.eventsPerSecond ?? 0) ? b : a));
    const file = result.rows.find((r) => r.systemId === 'sluice-file' && r.scenarioId === `${size}-batch-1000`);
    expect(limit?.target).toContain(`(${fastest.system})`);
    expect(limit?.measured).toBeCloseTo((file?.eventsPerSecond ?? 0) / (fastest.eventsPerSecond ?? 1), 9);
    // The same store on a segment zero-filled before the timer, against the same limit; the
    // run stayed in its one segment (no note says otherwise).
    const zeroFilled = result.rows.find((r) => r.systemId === 'sluice-file-zero-fill' && r.scenarioId === `${size}-batch-1000`);
    expect(zeroFilled?.status, zeroFilled?.reason).toBe('ok');
    expect(zeroFilled?.note ?? '').not.toMatch(/segments/);
    const reserved = result.targets.find((t) => t.target.startsWith(`${size}, batches of 1000: file store on a segment zero-filled before the timer`));
    expect(reserved?.measured).toBeCloseTo((zeroFilled?.eventsPerSecond ?? 0) / (fastest.eventsPerSecond ?? 1), 9);
    // Beside it, its bound: the synchronous loop into a sparse file, against the same limit.
    const sparse = result.rows.find((r) => r.systemId === 'raw-fdatasync-sync-sparse' && r.scenarioId === `${size}-batch-1000`);
    expect(sparse?.status, sparse?.reason).toBe('ok');
    const bound = result.targets.find((t) => t.target.startsWith(`${size}, batches of 1000: its bound here, the same synchronous loop into a sparse file`));
    expect(bound?.bound).toBe(true);
    expect(bound?.measured).toBeCloseTo((sparse?.eventsPerSecond ?? 0) / (fastest.eventsPerSecond ?? 1), 9);
  }
  const report = formatCompareReport(result);
  const tableLines = report.split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| target') && !line.startsWith('| application'));
  // results: header, separator, rows; targets and applications: separator, rows (their headers are filtered out above).
  expect(tableLines).toHaveLength(result.rows.length + 2 + 1 + result.targets.length + 1 + result.applications.length);
  expect(report).toMatch(/\| workload \| system \| configuration \| durability \| events\/s \| MB\/s \(payload\) \| p50 ms \| p99 ms \| file store ÷ this \| notes \|/);

  // The application rows ran their packages' bench scripts and read their figures back.
  expect(result.applications.map((a) => a.id)).toEqual(['commands', 'bank', 'catch-up', 'broadcast']);
  for (const a of result.applications) {
    expect(a.status, `${a.id}: ${a.reason ?? ''}`).toBe('ok');
    expect(a.measured, a.id).toBeGreaterThan(0);
    expect(a.reason, `${a.id}: exact`).toBeUndefined();
  }
  expect(report).toContain('### Applications (same run)');
  expect(report).toContain('| application | measured | target | met | how |');
});

it('reports a system that cannot run as skipped, and one whose scenarios throw as failed', { timeout: 60_000 }, async () => {
  const notHere: BenchSystem = {
    id: 'not-here',
    label: 'Not here',
    group: 'peer',
    configuration: 'none',
    durability: 'none',
    setup: () => Promise.reject(new SystemSkippedError('not installed: install it')),
  };
  const broken: BenchSystem = {
    id: 'broken',
    label: 'Broken',
    group: 'peer',
    configuration: 'none',
    durability: 'none',
    setup: async () => ({ run: () => Promise.reject(new Error('lost its connection')), teardown: async () => undefined }),
  };
  const result = await runCompareBench({ mode: 'smoke', directory: tmpdir(), installMissing: false, systems: [notHere, broken], apps: false });
  expect(result.rows.filter((r) => r.systemId === 'not-here')).toEqual([expect.objectContaining({ status: 'skipped', reason: 'not installed: install it', workload: 'all' })]);
  const failed = result.rows.filter((r) => r.systemId === 'broken');
  expect(failed).toHaveLength(workload('smoke').length);
  for (const r of failed) expect(r).toMatchObject({ status: 'failed', reason: 'lost its connection' });
  // Without the file store in the run no target can be checked, and each says why.
  for (const t of result.targets) expect(t).toMatchObject({ met: null, measured: null, reason: expect.stringMatching(/^(Sluice file store|Sluice file store, zero-filled segment|Sluice via broker|the hops bound|raw writeSync\+fdatasyncSync, sparse file) not in this run$/) });
});
