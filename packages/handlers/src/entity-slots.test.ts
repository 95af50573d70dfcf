import { describe, expect, it } from 'vitest';
import { EntitySlots } from './entity-slots.js';

describe('EntitySlots: one slot per entity, a bounded LRU cache through the slots', () => {
  it('evicts the least recently used state: storing and touching refresh an entity', () => {
    const slots = new EntitySlots(3);
    for (const id of ['a', 'b', 'c']) slots.store(slots.slotFor(id), { id }, 1);
    slots.touch(slots.get('a')!); // a is now the most recent: b is the oldest
    slots.store(slots.slotFor('b'), { id: 'b' }, 2); // b refreshed by a new state: c is the oldest
    slots.store(slots.slotFor('d'), { id: 'd' }, 1);
    expect(slots.size).toBe(3);
    expect(slots.get('c')).toBeUndefined();
    expect(['a', 'b', 'd'].map((id) => slots.get(id)?.cached)).toEqual([true, true, true]);
    slots.store(slots.slotFor('e'), { id: 'e' }, 1);
    expect(slots.get('a')).toBeUndefined();
  });

  it('a slot with pending commits outlives its cached state, with a new generation; it leaves once nothing is pending', () => {
    const slots = new EntitySlots(1);
    const a = slots.slotFor('a');
    slots.store(a, { balance: 1 }, 1);
    a.pending++;
    const generation = a.generation;
    slots.store(slots.slotFor('b'), { balance: 2 }, 1); // evicts a's state
    expect(a.cached).toBe(false);
    expect(a.generation).toBeGreaterThan(generation);
    // Still found: a load must wait for its pending commit before reading the partition.
    expect(slots.get('a')).toBe(a);
    a.pending--;
    slots.release(a);
    expect(slots.get('a')).toBeUndefined();
    expect(a.live).toBe(false);
    expect(slots.slotFor('a')).not.toBe(a);
  });

  it('cacheEntitiesMax 0 caches nothing but still tracks pending commits', () => {
    const slots = new EntitySlots(0);
    const a = slots.slotFor('a');
    slots.store(a, { balance: 1 }, 1);
    expect(a.cached).toBe(false);
    expect(slots.size).toBe(0);
    expect(slots.get('a')).toBe(a);
  });

  it('clear drops every cached state', () => {
    const slots = new EntitySlots(10);
    for (const id of ['a', 'b', 'c']) slots.store(slots.slotFor(id), { id }, 1);
    slots.clear();
    expect(slots.size).toBe(0);
    expect(['a', 'b', 'c'].map((id) => slots.get(id))).toEqual([undefined, undefined, undefined]);
  });
});
