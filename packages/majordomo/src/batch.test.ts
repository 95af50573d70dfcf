import { describe, expect, it } from 'vitest';
import {
  BATCH_EXTENSION,
  CREDIT_EXTENSION,
  parseWorkerMessage,
  pushBatchItem,
  workerBatchFrames,
  workerCreditGrantFrames,
  workerReadyFrames,
} from './mdp.js';
import {
  FAST,
  endpointOf,
  rawDealer,
  rawRouter,
  receiveMatching,
  receiveWithin,
  startBroker,
  startClient,
  startWorker,
  text,
  track,
  waitForEvent,
} from './testing/harness.js';
import { createWorker } from './worker.js';

/**
 * The opt-in batch extension (README "Batch extension"), on top of credit: several tagged
 * requests per message from the broker, several replies per message from the worker.
 */

const b = (value: string): Buffer => Buffer.from(value, 'latin1');
const E = Buffer.alloc(0);
const REQUEST = Buffer.from([0x02]);
const REPLY = Buffer.from([0x03]);
const HEARTBEAT = Buffer.from([0x04]);
const BATCH = Buffer.from([0x06]);
const isBatch = (frames: Buffer[]): boolean => frames[2]?.equals(BATCH) ?? false;
const isRequestOrBatch = (frames: Buffer[]): boolean => isBatch(frames) || (frames[2]?.equals(REQUEST) ?? false);

/** A raw worker that asks for `credit` and `batch`; returns once the grant arrived. */
async function rawBatchWorker(endpoint: string, service: string, credit: number, batch: number): Promise<{ socket: ReturnType<typeof rawDealer>; credit: number; batch: number }> {
  const socket = rawDealer(endpoint);
  await socket.send(workerReadyFrames(service, credit, batch));
  const grant = await receiveMatching(socket, (frames) => frames[2]?.equals(HEARTBEAT) === true && frames.length > 3);
  expect(grant.slice(3, 4)).toEqual([CREDIT_EXTENSION]);
  expect(grant[5]).toEqual(BATCH_EXTENSION);
  return { socket, credit: Number(grant[4].toString('latin1')), batch: Number(grant[6].toString('latin1')) };
}

/** The requests of a BATCH as the worker's DEALER receives it: tag, client, body. */
function itemsOf(frames: Buffer[]): { tag: number; client: Buffer; body: Buffer[] }[] {
  const parsed = parseWorkerMessage(frames);
  if (!parsed.ok || parsed.value.command !== 'batch') throw new Error(`not a BATCH: ${JSON.stringify(parsed)}`);
  return parsed.value.items.map((item) => ({ tag: item.tag, client: item.client, body: [...item.body] }));
}

describe('batch extension: frames', () => {
  it('READY, the grant and BATCH parse; a BATCH whose heads and frames do not add up is refused', () => {
    expect(parseWorkerMessage(workerReadyFrames('echo', 64, 16))).toEqual({ ok: true, value: { command: 'ready', service: b('echo'), credit: 64, batch: 16 } });
    expect(parseWorkerMessage(workerCreditGrantFrames(b('W'), 8, 4).slice(1))).toEqual({ ok: true, value: { command: 'heartbeat', credit: 8, batch: 4 } });
    // Without credit there is no batch to ask for.
    expect(workerReadyFrames('echo', undefined, 16)).toHaveLength(4);
    for (const value of ['0', '1025', 'x', '']) {
      const frames = [...workerReadyFrames('echo', 8), BATCH_EXTENSION, b(value)];
      expect(parseWorkerMessage(frames)).toEqual({ ok: false, reason: 'unexpected-frames' });
    }

    const batch = workerBatchFrames();
    pushBatchItem(batch, 7, b('C1'), [b('a')]);
    pushBatchItem(batch, 0xffffffff, b('C2'), [b('corr'), b('b'), b('c')]);
    expect(parseWorkerMessage(batch)).toEqual({
      ok: true,
      value: {
        command: 'batch',
        items: [
          { tag: 7, client: b('C1'), body: [b('a')] },
          { tag: 0xffffffff, client: b('C2'), body: [b('corr'), b('b'), b('c')] },
        ],
      },
    });
    const head = (tag: number, count: number): Buffer => {
      const h = Buffer.alloc(6);
      h.writeUInt32BE(tag, 0);
      h.writeUInt16BE(count, 4);
      return h;
    };
    const start = [E, b('MDPW01'), BATCH];
    for (const [name, frames] of [
      ['empty', start],
      ['short head', [...start, Buffer.alloc(5), b('C'), b('x')]],
      ['no client', [...start, head(1, 1)]],
      ['empty client', [...start, head(1, 1), E, b('x')]],
      ['zero body frames', [...start, head(1, 0), b('C')]],
      ['count past the end', [...start, head(1, 3), b('C'), b('x'), b('y')]],
    ] as const) {
      expect(parseWorkerMessage([...frames]), name).toEqual({ ok: false, reason: 'malformed-batch' });
    }
  });
});

describe('batch extension: broker', () => {
  it('grants at most workerBatchMax, sends a burst in BATCHes of at most that, and routes a BATCH of replies in any order', async () => {
    const broker = await startBroker({ ...FAST, workerBatchMax: 4 });
    const { socket: worker, credit, batch } = await rawBatchWorker(broker.endpoint, 'echo', 16, 10);
    expect({ credit, batch }).toEqual({ credit: 16, batch: 4 });
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 5000 });
    const replies = Array.from({ length: 10 }, (_, i) => client.request('echo', [b(`r${i}`)]));

    const received: { tag: number; client: Buffer; body: Buffer[] }[] = [];
    let messages = 0;
    while (received.length < 10) {
      const message = await receiveMatching(worker, isRequestOrBatch);
      // Tagged REQUESTs stay valid on a batch connection; a burst comes as BATCHes here.
      expect(isBatch(message)).toBe(true);
      const items = itemsOf(message);
      expect(items.length).toBeLessThanOrEqual(4);
      received.push(...items);
      messages += 1;
    }
    expect(messages).toBeLessThan(10);
    expect(new Set(received.map((item) => item.tag)).size).toBe(10);
    // One BATCH with every reply, newest first.
    const answer = workerBatchFrames();
    for (const item of [...received].reverse()) pushBatchItem(answer, item.tag, item.client, item.body);
    await worker.send(answer);
    expect((await Promise.all(replies)).map(text)).toEqual(Array.from({ length: 10 }, (_, i) => [`r${i}`]));
    expect(broker.stats()).toMatchObject({ repliesRouted: 10, queuedRequests: 0, workers: 1 });
  });

  it('a BATCH from a worker not granted the extension disconnects it, and its request goes to another worker', async () => {
    const broker = await startBroker({ ...FAST });
    const worker = rawDealer(broker.endpoint);
    await worker.send(workerReadyFrames('echo', 4)); // credit, no batch
    await receiveMatching(worker, (frames) => frames[2]?.equals(HEARTBEAT) === true && frames.length === 5);
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 5000 });
    const reply = client.request('echo', [b('a')]);
    const request = await receiveMatching(worker, (frames) => frames[2]?.equals(REQUEST) ?? false);
    const removed = waitForEvent(broker, 'worker-removed', () => true);
    const answer = workerBatchFrames();
    pushBatchItem(answer, request[5].readUInt32BE(0), request[3], request.slice(6));
    await worker.send(answer);
    expect((await removed).reason).toBe('unexpected-command');
    await startWorker(broker, { ...FAST, service: 'echo', handler: async (r) => r });
    expect(text(await reply)).toEqual(['a']);
  });

  it('a BATCH naming a tag the worker does not hold disconnects it; every request it held is redelivered, none dropped', async () => {
    const broker = await startBroker({ ...FAST });
    const { socket: worker } = await rawBatchWorker(broker.endpoint, 'echo', 8, 8);
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const replies = Array.from({ length: 6 }, (_, i) => client.request('echo', [b(`q${i}`)]));
    const held: { tag: number; client: Buffer; body: Buffer[] }[] = [];
    while (held.length < 6) held.push(...itemsOf(await receiveMatching(worker, isBatch)));
    const removed = waitForEvent(broker, 'worker-removed', () => true);
    // The first reply is right, the second names a tag never given: the rest are taken back.
    const answer = workerBatchFrames();
    pushBatchItem(answer, held[0].tag, held[0].client, held[0].body);
    pushBatchItem(answer, 0xabcdef, held[1].client, held[1].body);
    await worker.send(answer);
    expect((await removed).reason).toBe('unexpected-reply');
    expect(broker.stats()).toMatchObject({ repliesRouted: 1, redeliveredRequests: 5 });
    await startWorker(broker, { ...FAST, service: 'echo', handler: async (r) => r, credit: 4, batch: 4 });
    expect((await Promise.all(replies)).map(text)).toEqual(Array.from({ length: 6 }, (_, i) => [`q${i}`]));
  });
});

describe('batch extension: worker', () => {
  it('answers a burst with fewer messages than replies: requests and replies travel several to a message', async () => {
    const broker = await startBroker({ ...FAST });
    const worker = await startWorker(broker, { ...FAST, service: 'echo', credit: 64, batch: 32, handler: async (r) => r });
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000, outstandingMax: 1000 });
    // Let the grant arrive before the burst (heartbeats may come and go; they are few).
    await client.request('echo', [b('warm')]);
    const before = broker.stats();
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => client.request('echo', [b(`m${i}`)])));
    expect(replies.map(text)).toEqual(Array.from({ length: 200 }, (_, i) => [`m${i}`]));
    const after = broker.stats();
    expect(after.repliesRouted - before.repliesRouted).toBe(200);
    // 200 client requests in, and the worker's replies in far fewer than 200 messages.
    const fromWorker = after.messagesReceived - before.messagesReceived - 200;
    expect(fromWorker).toBeLessThan(100);
    expect(worker.stats().requestsHandled).toBe(201);
  });

  it('with a reference broker (no grant) it asks on READY, then takes one untagged request at a time and replies with REPLY', async () => {
    const router = await rawRouter();
    track(createWorker({ endpoint: endpointOf(router), service: 'echo', credit: 8, batch: 8, handler: async (r) => r, ...FAST, heartbeatLiveness: 1000 }));
    const ready = await receiveWithin(router);
    const identity = ready[0];
    expect(ready.slice(1)).toEqual([E, b('MDPW01'), Buffer.from([1]), b('echo'), CREDIT_EXTENSION, b('8'), BATCH_EXTENSION, b('8')]);
    await router.send([identity, E, b('MDPW01'), REQUEST, b('CLIENT'), E, b('body')]);
    const reply = await receiveMatching(router, (frames) => frames[3]?.equals(REPLY) ?? false);
    expect(reply).toEqual([identity, E, b('MDPW01'), REPLY, b('CLIENT'), E, b('body')]);
  });

  it('a BATCH on a connection where it was not granted is not taken', async () => {
    const router = await rawRouter();
    const worker = track(createWorker({ endpoint: endpointOf(router), service: 'echo', credit: 8, batch: 8, handler: async (r) => r, ...FAST, heartbeatLiveness: 1000 }));
    const identity = (await receiveWithin(router))[0];
    const batch = workerBatchFrames(identity);
    pushBatchItem(batch, 1, b('CLIENT'), [b('x')]);
    await router.send(batch);
    // A plain request after it is served; the BATCH was counted, not handled.
    await router.send([identity, E, b('MDPW01'), REQUEST, b('CLIENT'), E, b('body')]);
    await receiveMatching(router, (frames) => frames[3]?.equals(REPLY) ?? false);
    expect(worker.stats()).toMatchObject({ requestsHandled: 1, unexpectedCommands: 1 });
  });
});
