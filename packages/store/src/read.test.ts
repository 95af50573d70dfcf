import { describe, expect, it } from 'vitest';
import { PartitionClosedError } from './errors.js';
import { createMemoryStorage } from './memory-storage.js';
import { openPartition, type Partition } from './partition.js';

const te = new TextEncoder();

async function partitionWith(commits: number, eventsPer: number): Promise<Partition> {
  const p = await openPartition({ storage: createMemoryStorage(), name: 'read' });
  for (let i = 0; i < commits; i++) {
    await p.append({ streamId: `s-${i}`, events: Array.from({ length: eventsPer }, (_, k) => ({ type: 'E', data: te.encode(`${i}.${k}`) })) });
  }
  return p;
}

describe('partition.read() iterator', () => {
  it('serves a range across batches, honours maxCount, and fixes its end when it starts', async () => {
    const p = await partitionWith(5, 4); // seqs 1..20 in five batches
    const seqs: number[] = [];
    for await (const e of p.read({ fromSeq: 3, toSeq: 14 })) seqs.push(e.seq);
    expect(seqs).toEqual(Array.from({ length: 12 }, (_, i) => i + 3));
    const few: number[] = [];
    for await (const e of p.read({ fromSeq: 6, maxCount: 5 })) few.push(e.seq);
    expect(few).toEqual([6, 7, 8, 9, 10]);
    // The head is taken at the first next(): a commit after it is not part of this read.
    const it = p.read({ fromSeq: 19 });
    expect((await it.next()).value?.seq).toBe(19);
    await p.append({ streamId: 'late', events: [{ type: 'E', data: te.encode('late') }] });
    expect((await it.next()).value?.seq).toBe(20);
    expect((await it.next()).done).toBe(true);
    expect((await it.next()).done).toBe(true);
    await p.close();
  });

  it('answers next() calls made before the previous one settled, in order', async () => {
    const p = await partitionWith(3, 2);
    const it = p.read();
    const results = await Promise.all(Array.from({ length: 8 }, () => it.next()));
    expect(results.map((r) => (r.done === true ? 'done' : r.value.seq))).toEqual([1, 2, 3, 4, 5, 6, 'done', 'done']);
    await p.close();
  });

  it('ends on break or return() and rejects once the partition is closed', async () => {
    const p = await partitionWith(3, 2);
    let n = 0;
    for await (const e of p.read()) {
      n = e.seq;
      if (n === 3) break;
    }
    expect(n).toBe(3);
    const it = p.read();
    await it.next();
    expect(await it.return(undefined)).toEqual({ value: undefined, done: true });
    expect((await it.next()).done).toBe(true);
    await expect(it.throw(new Error('stop'))).rejects.toThrow('stop');
    await p.close();
    await expect(p.read().next()).rejects.toBeInstanceOf(PartitionClosedError);
  });
});
