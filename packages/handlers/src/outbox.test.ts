import { createMemoryStorage, openPartition } from '@sluice/store';
import { createStreamCheckpointStore } from '@sluice/subscriptions';
import { expect, it } from 'vitest';
import { createHandlerHost, startOutboxDispatcher, type OutboxMessage } from './index.js';
import { account, counter } from './test-domain.fixture.js';

/**
 * Invariant: the outbox dispatcher, stopped by a failure in the middle of a batch and
 * restarted, publishes every committed message (nothing lost); what it publishes again
 * carries the same id, so a downstream that dedupes by id sees each message exactly once.
 */
it('the outbox dispatcher resumes from its durable checkpoint after a crash mid-batch: no loss, no duplicate after dedupe by id', async () => {
  const partition = await openPartition({ storage: createMemoryStorage(), name: 'out' });
  try {
    const host = createHandlerHost({ partition, entities: [account, counter] });
    for (let i = 0; i < 30; i++) await host.execute({ id: `open-${i}`, commands: [{ recipient: `account-${i}`, command: { type: 'Open' } }] });
    for (let i = 0; i < 30; i++) await host.execute({ id: `inc-${i}`, commands: [{ recipient: 'counter-1', command: { type: 'Increment' } }] });
    const expected = 30 + 10; // 30 Opened events + 10 CounterReachedMultipleOf3 messages

    const received: OutboxMessage[] = [];
    let armed = true;
    const publish = async (messages: OutboxMessage[]) => {
      if (armed && received.length >= 20 && messages.length >= 2) {
        // Deliver the first message of this batch, then lose the connection: the checkpoint is not saved.
        received.push(messages[0]);
        throw new Error('downstream connection lost');
      }
      received.push(...messages);
    };
    const first = startOutboxDispatcher({ partition, publish, batchSizeMax: 8, checkpoints: createStreamCheckpointStore(partition) });
    await expect(first.done).rejects.toThrow('downstream connection lost');
    armed = false;
    const second = startOutboxDispatcher({ partition, publish, batchSizeMax: 8, checkpoints: createStreamCheckpointStore(partition) });
    await second.waitFor(partition.lastSeq);
    await second.stop();

    const ids = new Set(received.map((m) => m.id));
    expect(ids.size).toBe(expected); // nothing lost
    expect(received.length - ids.size).toBeGreaterThan(0); // the interrupted batch came again...
    expect(received.length - ids.size).toBeLessThan(8); // ...but only that batch
    const again = received.filter((m, i) => received.findIndex((n) => n.id === m.id) !== i);
    for (const m of again) expect(received.find((n) => n.id === m.id)).toEqual(m); // same id, same message
  } finally {
    await partition.close();
  }
});
