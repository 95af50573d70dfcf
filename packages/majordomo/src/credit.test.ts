import { describe, expect, it } from 'vitest';
import {
  CREDIT_EXTENSION,
  parseWorkerMessage,
  workerCreditGrantFrames,
  workerReadyFrames,
} from './mdp.js';
import {
  FAST,
  endpointOf,
  rawDealer,
  rawRouter,
  rawWorker,
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
 * The opt-in credit extension (PROTOCOL.md "Credit extension"): several requests in flight
 * per worker connection, negotiated on READY, request tags on REQUEST / REPLY bodies.
 */

const b = (value: string): Buffer => Buffer.from(value, 'latin1');
const E = Buffer.alloc(0);
const REQUEST = Buffer.from([0x02]);
const REPLY = Buffer.from([0x03]);
const HEARTBEAT = Buffer.from([0x04]);
const isRequest = (frames: Buffer[]): boolean => frames[2]?.equals(REQUEST) ?? false;

/** No REQUEST arrives on the socket within a short while (heartbeats may). */
async function quiet(socket: ReturnType<typeof rawDealer>): Promise<boolean> {
  try {
    await receiveMatching(socket, isRequest, 100);
    return false;
  } catch {
    return true;
  }
}

/** A raw worker that asks for `credit` and returns once the grant arrived. */
async function rawCreditWorker(endpoint: string, service: string, credit: number): Promise<{ socket: ReturnType<typeof rawDealer>; granted: number }> {
  const socket = rawDealer(endpoint);
  await socket.send(workerReadyFrames(service, credit));
  const grant = await receiveMatching(socket, (frames) => frames[2]?.equals(HEARTBEAT) === true && frames.length === 5);
  expect(grant[3]).toEqual(CREDIT_EXTENSION);
  return { socket, granted: Number(grant[4].toString('latin1')) };
}

describe('credit extension: frames', () => {
  it('READY and the grant parse with their credit; malformed extension frames are refused', () => {
    const ready = parseWorkerMessage(workerReadyFrames('echo', 64));
    expect(ready).toEqual({ ok: true, value: { command: 'ready', service: b('echo'), credit: 64 } });
    const grant = parseWorkerMessage(workerCreditGrantFrames(b('W'), 8).slice(1));
    expect(grant).toEqual({ ok: true, value: { command: 'heartbeat', credit: 8 } });
    for (const value of ['0', '65536', 'x1', '', '123456']) {
      const frames = [E, b('MDPW01'), Buffer.from([1]), b('echo'), CREDIT_EXTENSION, b(value)];
      expect(parseWorkerMessage(frames)).toEqual({ ok: false, reason: 'unexpected-frames' });
    }
    const otherName = [E, b('MDPW01'), Buffer.from([1]), b('echo'), b('OTHER.EXT/1'), b('4')];
    expect(parseWorkerMessage(otherName)).toEqual({ ok: false, reason: 'unexpected-frames' });
  });
});

describe('credit extension: broker', () => {
  it('grants at most workerCreditMax and never sends more requests than the credit', async () => {
    const broker = await startBroker({ ...FAST, workerCreditMax: 3 });
    const { socket: worker, granted } = await rawCreditWorker(broker.endpoint, 'echo', 10);
    expect(granted).toBe(3);
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 5000 });
    const replies = Array.from({ length: 5 }, (_, i) => client.request('echo', [b(`r${i}`)]));
    const first = [await receiveMatching(worker, isRequest), await receiveMatching(worker, isRequest), await receiveMatching(worker, isRequest)];
    // Tags are 4 bytes and distinct; the credit is used up, so nothing more comes.
    const tags = first.map((request) => request[5].toString('hex'));
    expect(new Set(tags).size).toBe(3);
    for (const request of first) expect(request[5]).toHaveLength(4);
    expect(await quiet(worker)).toBe(true);
    expect(broker.stats()).toMatchObject({ queuedRequests: 2, idleWorkers: 0 });
    // Answer out of order: the third first. Each reply frees one credit, so one more comes.
    for (const request of [first[2], first[0]]) {
      await worker.send([E, b('MDPW01'), REPLY, request[3], E, ...request.slice(5)]);
      const next = await receiveMatching(worker, isRequest);
      first.push(next);
    }
    expect(await quiet(worker)).toBe(true);
    for (const request of [first[1], first[3], first[4]]) {
      await worker.send([E, b('MDPW01'), REPLY, request[3], E, ...request.slice(5)]);
    }
    expect((await Promise.all(replies)).map(text)).toEqual([['r0'], ['r1'], ['r2'], ['r3'], ['r4']]);
    expect(broker.stats()).toMatchObject({ queuedRequests: 0, repliesRouted: 5, workers: 1 });
  });

  it('a reply with a tag the worker was not given disconnects it, and its requests go to another worker', async () => {
    const broker = await startBroker({ ...FAST });
    const { socket: worker } = await rawCreditWorker(broker.endpoint, 'echo', 4);
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 5000 });
    const replies = [client.request('echo', [b('a')]), client.request('echo', [b('b')])];
    const request = await receiveMatching(worker, isRequest);
    await receiveMatching(worker, isRequest);
    const removed = waitForEvent(broker, 'worker-removed', () => true);
    await worker.send([E, b('MDPW01'), REPLY, request[3], E, Buffer.from([9, 9, 9, 9]), b('bogus')]);
    expect((await removed).reason).toBe('unexpected-reply');
    // Nothing is lost: both come back to a worker that takes them.
    await startWorker(broker, { ...FAST, service: 'echo', handler: async (r) => r, credit: 4 });
    expect((await Promise.all(replies)).map(text)).toEqual([['a'], ['b']]);
  });

  it('a worker that disappears with N requests in flight: every one is redelivered, in order, none dropped', async () => {
    const broker = await startBroker({ ...FAST });
    const { socket: worker } = await rawCreditWorker(broker.endpoint, 'echo', 8);
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const replies = Array.from({ length: 6 }, (_, i) => client.request('echo', [b(`q${i}`)]));
    for (let i = 0; i < 6; i += 1) await receiveMatching(worker, isRequest);
    expect(broker.stats().queuedRequests).toBe(0);
    // It heartbeats while busy (as MajordomoWorker does), then goes silent (its process died):
    // the broker purges it after heartbeat × liveness.
    await worker.send([E, b('MDPW01'), HEARTBEAT]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const removed = waitForEvent(broker, 'worker-removed', () => true);
    worker.close();
    expect((await removed).reason).toBe('expired');
    expect(broker.stats()).toMatchObject({ queuedRequests: 6, redeliveredRequests: 6 });
    // A plain RFC 7 worker takes them over one at a time and sees them in the order sent.
    const seen: string[] = [];
    await startWorker(broker, { ...FAST, service: 'echo', handler: async (r) => (seen.push(r[0].toString()), r) });
    expect((await Promise.all(replies)).map(text)).toEqual([['q0'], ['q1'], ['q2'], ['q3'], ['q4'], ['q5']]);
    expect(seen).toEqual(['q0', 'q1', 'q2', 'q3', 'q4', 'q5']);
  });

  it('a credit worker silent from the moment it was sent requests (it reconnected on a new socket) is purged after heartbeat × liveness, not busyTimeoutMs', async () => {
    // Busy grace of a minute, client timeout of 10 s: only the heartbeat expiry (150 ms) gets
    // the requests back in time. A MajordomoWorker that gave up on a silent broker closes its
    // socket and reconnects; requests the broker had just sent to the old one land nowhere.
    const broker = await startBroker({ ...FAST, busyTimeoutMs: 60_000 });
    const { socket: gone } = await rawCreditWorker(broker.endpoint, 'echo', 8);
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000, attemptsMax: 1 });
    const replies = Array.from({ length: 3 }, (_, i) => client.request('echo', [b(`q${i}`)]));
    for (let i = 0; i < 3; i += 1) await receiveMatching(gone, isRequest);
    const removed = waitForEvent(broker, 'worker-removed', () => true, 5000);
    gone.close(); // never heartbeated while busy, never will
    expect((await removed).reason).toBe('expired');
    expect(broker.stats()).toMatchObject({ redeliveredRequests: 3, queuedRequests: 3 });
    await startWorker(broker, { ...FAST, service: 'echo', credit: 8, handler: async (r) => r });
    expect((await Promise.all(replies)).map(text)).toEqual([['q0'], ['q1'], ['q2']]);
  });

  it('requests delivered deliveriesMax times already are answered with 502 when their credit worker is lost', async () => {
    const broker = await startBroker({ ...FAST, deliveriesMax: 1 });
    const { socket: worker } = await rawCreditWorker(broker.endpoint, 'echo', 8);
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const replies = Array.from({ length: 3 }, (_, i) => client.request('echo', [b(`q${i}`)]).then(
      () => 'answered',
      (error: Error) => error.name,
    ));
    for (let i = 0; i < 3; i += 1) await receiveMatching(worker, isRequest);
    await worker.send([E, b('MDPW01'), Buffer.from([0x05])]); // DISCONNECT
    expect(await Promise.all(replies)).toEqual(['BrokerRejectedError', 'BrokerRejectedError', 'BrokerRejectedError']);
    expect(broker.stats()).toMatchObject({ rejectedRequests: 3, queuedRequests: 0 });
  });

  it('reference and credit workers on one service share its requests, and each gets what it can hold', async () => {
    const broker = await startBroker({ ...FAST });
    const reference = await rawWorker(broker, 'echo');
    const credited = await startWorker(broker, {
      ...FAST,
      service: 'echo',
      credit: 16,
      handler: async (r) => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        return [b('credit'), ...r];
      },
    });
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const replies = Array.from({ length: 40 }, (_, i) => client.request('echo', [b(`m${i}`)]));
    // The reference worker gets one request (untagged, exactly RFC 7) and answers it late.
    const request = await receiveMatching(reference, isRequest);
    expect(request).toHaveLength(7); // "", MDPW01, 0x02, client, "", correlation, body
    expect(await quiet(reference)).toBe(true);
    await reference.send([E, b('MDPW01'), REPLY, request[3], E, request[5], b('reference'), request[6]]);
    const answered = (await Promise.all(replies)).map((reply) => reply[0].toString());
    expect(answered.filter((who) => who === 'reference').length).toBeGreaterThanOrEqual(1);
    expect(answered.filter((who) => who === 'credit').length).toBeGreaterThanOrEqual(30);
    expect(credited.stats().requestsHandled + answered.filter((who) => who === 'reference').length).toBe(40);
  });
});

describe('credit extension: worker', () => {
  it('runs up to the granted credit of handlers at once on one connection', async () => {
    const broker = await startBroker({ ...FAST, workerCreditMax: 5 });
    let running = 0;
    let most = 0;
    await startWorker(broker, {
      ...FAST,
      service: 'slow',
      credit: 50,
      handler: async (r) => {
        running += 1;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 30));
        running -= 1;
        return r;
      },
    });
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => client.request('slow', [b(String(i))])));
    expect(replies.map(text)).toEqual(Array.from({ length: 20 }, (_, i) => [String(i)]));
    expect(most).toBe(5);
  });

  it('with a reference broker (no grant) it asks on READY, then takes one untagged request at a time', async () => {
    const router = await rawRouter();
    track(
      createWorker({ endpoint: endpointOf(router), service: 'echo', credit: 8, handler: async (r) => r, ...FAST, heartbeatLiveness: 1000 }),
    );
    const ready = await receiveWithin(router);
    const identity = ready[0];
    expect(ready.slice(1)).toEqual([E, b('MDPW01'), Buffer.from([1]), b('echo'), CREDIT_EXTENSION, b('8')]);
    // mdbroker ignores the extra frames and sends plain RFC 7 requests.
    await router.send([identity, E, b('MDPW01'), REQUEST, b('CLIENT'), E, b('body')]);
    const reply = await receiveMatching(router, (frames) => frames[3]?.equals(REPLY) ?? false);
    expect(reply).toEqual([identity, E, b('MDPW01'), REPLY, b('CLIENT'), E, b('body')]);
  });
});
