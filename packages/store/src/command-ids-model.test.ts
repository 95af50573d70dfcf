import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WorkerCheckpointRunner } from './index-checkpoint-runner.js';
import type { CheckpointJob } from './index-checkpoint-work.js';
import { MemoryLog, createMemoryStorage, openPartition, type CommitResult, type Partition, type PartitionOptions, type PartitionStorage } from './index.js';
import { overrideStorage } from './storage-override.fixture.js';

const data = new TextEncoder().encode('x');
const clock = (): number => 1_700_000_000_000;
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
function slowStorage(log: MemoryLog, seed: number): PartitionStorage {
  const inner = createMemoryStorage({ log });
  const r = rng(seed);
  return overrideStorage(inner, {
    sync: async () => {
      const head = await inner.sync();
      for (let i = Math.floor(r() * 3); i > 0; i--) await new Promise((res) => setImmediate(res));
      return head;
    },
  });
}
const hashes: Record<string, ((s: string, out: Uint32Array) => void) | undefined> = {
  real: undefined,
  all: (_s, out) => { out[0] = 7; out[1] = 7; },
  two: (s, out) => { let h = 0; for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0; out[0] = 5; out[1] = h % 2; },
};
const dirs: string[] = [];
afterEach(async () => { vi.restoreAllMocks(); for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }); });

type M = Map<string, CommitResult>; // id -> original result (firstSeq,lastSeq)
let idSeq = 0;
async function drive(p: Partition, model: M, seed: number, units: number, errors: string[]): Promise<void> {
  const r = rng(seed);
  let wave: Array<Promise<void>> = [];
  for (let u = 0; u < units; u++) {
    const known = [...model.keys()];
    const ids: string[] = [];
    const roll = r();
    let expectDup: string | undefined;
    if (roll < 0.25 && known.length > 0) {
      expectDup = known[Math.floor(r() * known.length)];
      ids.push(expectDup);
      if (r() < 0.3) ids.push(expectDup);
    } else {
      const n = 1 + Math.floor(r() * 3);
      for (let i = 0; i < n; i++) ids.push(`id-${idSeq++}`);
      if (r() < 0.2) ids.push(ids[0]);
    }
    const unitIds = ids.slice();
    wave.push(
      p.commit({ changes: [{ streamId: `s-${Math.floor(r() * 5)}`, events: Array.from({ length: 1 + Math.floor(r() * 3) }, () => ({ type: 'E', data })) }], commandIds: ids }).then(
        (res) => {
          if (expectDup !== undefined) {
            const orig = model.get(expectDup);
            if (!res.duplicate) errors.push(`id ${expectDup} (committed at ${orig?.firstSeq}) taken as new at ${res.firstSeq}`);
            else if (orig && orig.firstSeq !== res.firstSeq) errors.push(`id ${expectDup} dup names ${res.firstSeq}, was ${orig.firstSeq}`);
          } else {
            if (res.duplicate) errors.push(`new ids ${unitIds} taken for a duplicate of ${res.firstSeq}`);
            for (const id of unitIds) model.set(id, res);
          }
        },
        (e: unknown) => { errors.push(`unit ${unitIds} failed: ${String(e)}`); },
      ),
    );
    if (wave.length >= 1 + Math.floor(r() * 12)) { await Promise.all(wave); wave = []; }
  }
  await Promise.all(wave);
}
async function check(p: Partition, model: M, errors: string[], label: string): Promise<void> {
  for (const [id, res] of model) {
    const got = await p.commandResult(id);
    if (got?.firstSeq !== res.firstSeq) errors.push(`${label}: commandResult(${id}) = ${got?.firstSeq}, want ${res.firstSeq}`);
  }
  for (let i = 0; i < 20; i++) if ((await p.commandResult(`never-${i}`)) !== undefined) errors.push(`${label}: never-${i} found`);
}

describe('command ids against a model: random units of new, duplicate and twice-named ids, up to 8 groups in flight, late syncs, forced hash collisions, failing checkpoint builds, reopen', () => {
  for (const [hash, failEvery, cpe, mode] of [
    ['real', 0, 7, 'dir'], ['real', 3, 4, 'crash'], ['all', 3, 7, 'crash'], ['two', 2, 5, 'dir'], ['two', 0, 16, 'memory'], ['all', 0, 3, 'memory'],
  ] as const) {
    it(`hash ${hash}, a checkpoint every ${cpe} events, ${failEvery > 0 ? `1 in ${failEvery} builds failing` : "no build failing"}, ${mode}`, async () => {
      const orig = WorkerCheckpointRunner.prototype.run;
      let n = 0;
      vi.spyOn(WorkerCheckpointRunner.prototype, 'run').mockImplementation(function (this: WorkerCheckpointRunner, job: CheckpointJob) {
        if (failEvery > 0 && job.kind === 'build' && ++n % failEvery === 0) return Promise.reject(new Error('injected'));
        return orig.call(this, job);
      } as typeof orig);
      const log = new MemoryLog();
      const dir = await mkdtemp(join(tmpdir(), 'sluice-command-model-'));
      dirs.push(dir);
      const errors: string[] = [];
      const model: M = new Map();
      const opts = { indexDirectory: mode === 'memory' ? undefined : dir, indexCheckpointEvents: cpe, groupsInFlightMax: 8, clock, indexHash: hashes[hash], onIndexError: () => undefined, commandResultCacheMax: 4 } as Omit<PartitionOptions, 'storage'>;
      const p = await openPartition({ ...opts, storage: slowStorage(log, cpe) } as PartitionOptions);
      await drive(p, model, cpe * 7 + failEvery, 200, errors);
      await check(p, model, errors, 'live');
      await drive(p, model, cpe * 11 + 1, 100, errors);
      if (mode === 'crash') log.powerLoss();
      else await p.close();
      if (mode !== 'memory') {
        const q = await openPartition({ ...opts, storage: slowStorage(log, cpe + 100) } as PartitionOptions);
        await check(q, model, errors, 'reopened');
        await drive(q, model, cpe * 13 + 2, 100, errors);
        await check(q, model, errors, 'reopened live');
        await q.close();
        if (mode === 'crash') await p.close().catch(() => undefined);
      }
      expect(errors.slice(0, 10)).toEqual([]);
    });
  }
});
