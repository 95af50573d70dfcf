import { describe, expect, it } from 'vitest';
import { MajordomoBroker } from './broker.js';
import { encodeCorrelation } from './correlation.js';
import { BrokerBindError, BrokerRejectedError, InvalidBrokerOptionsError, isBrokerError } from './errors.js';
import {
  clientRequestFrames,
  workerHeartbeatFrames,
  workerReadyFrames,
  workerReplyFrames,
} from './mdp.js';
import {
  FAST,
  nothingPending,
  rawDealer,
  rawWorker,
  receiveMatching,
  receiveWithin,
  startBroker,
  startClient,
  startWorker,
  text,
  waitForEvent,
  waitForEvents,
} from './testing/harness.js';

const b = (value: string): Buffer => Buffer.from(value, 'latin1');
const E = Buffer.alloc(0);
const echo = async (request: Buffer[]): Promise<Buffer[]> => request;
const isCommand = (command: number) => (frames: Buffer[]) => frames[2]?.length === 1 && frames[2][0] === command;

describe('MajordomoBroker: binding and options', () => {
  it('binds port * and reports the real endpoint', async () => {
    const broker = await startBroker();
    expect(broker.endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(broker.endpoint).not.toMatch(/:\*$|:0$/);
  });

  it('sends on its ROUTER sockets without a readiness check (sendTimeout 0: a ROUTER never blocks)', async () => {
    // The hot path: with zeromq.js's default (-1), every send first asks libzmq for
    // ZMQ_EVENTS (a poll() and a getpid() per message sent).
    const broker = await startBroker({ workerEndpoint: 'tcp://127.0.0.1:*' });
    const sockets = broker as unknown as { socket: { sendTimeout: number }; workerSocket: { sendTimeout: number } };
    expect(sockets.socket.sendTimeout).toBe(0);
    expect(sockets.workerSocket.sendTimeout).toBe(0);
  });

  it('binds port 0 the same way', async () => {
    const broker = await startBroker({ endpoint: 'tcp://127.0.0.1:0' });
    expect(Number(broker.endpoint.split(':').pop())).toBeGreaterThan(0);
  });

  it('rejects a taken port with BrokerBindError saying what to do', async () => {
    const first = await startBroker();
    const second = new MajordomoBroker({ endpoint: first.endpoint });
    const error = await second.start().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BrokerBindError);
    expect((error as Error).message).toContain('port 0');
    await second.close();
  });

  it('lists every invalid option at once', () => {
    const attempt = () =>
      new MajordomoBroker({ endpoint: 'localhost', heartbeatIntervalMs: 0, heartbeatLiveness: 1.5 });
    expect(attempt).toThrow(InvalidBrokerOptionsError);
    try {
      attempt();
    } catch (error) {
      expect((error as InvalidBrokerOptionsError).problems).toHaveLength(3);
      expect(isBrokerError(error, 'SLUICE_BROKER_INVALID_OPTIONS')).toBe(true);
    }
  });
});

describe('MajordomoBroker: routing', () => {
  it('routes an echo request through the broker to a worker and back', async () => {
    const broker = await startBroker();
    await startWorker(broker, { service: 'echo', handler: echo });
    const client = startClient({ endpoints: [broker.endpoint] });
    expect(text(await client.request('echo', [b('hello'), b('world')]))).toEqual(['hello', 'world']);
    expect(broker.stats()).toMatchObject({ requestsDispatched: 1, repliesRouted: 1, malformedTotal: 0 });
  });

  it('queues requests until a worker for the service appears', async () => {
    const broker = await startBroker();
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const replies = Promise.all([1, 2, 3].map((n) => client.request('late', [b(`r${n}`)])));
    // One socket, in order: once the MMI reply is back the broker has queued all three.
    expect(await client.hasService('late')).toBe(false);
    expect(broker.stats().queuedRequests).toBe(3);
    await startWorker(broker, { service: 'late', handler: echo });
    expect((await replies).map(text)).toEqual([['r1'], ['r2'], ['r3']]);
    expect(broker.stats().queuedRequests).toBe(0);
  });

  it('hands requests to the least recently used idle worker', async () => {
    const broker = await startBroker();
    const first = await rawWorker(broker, 'lru');
    const second = await rawWorker(broker, 'lru');
    const client = rawDealer(broker.endpoint);
    await client.send(clientRequestFrames('lru', [b('one')]));
    const onFirst = await receiveMatching(first, isCommand(2));
    await client.send(clientRequestFrames('lru', [b('two')]));
    const onSecond = await receiveMatching(second, isCommand(2));
    expect(text(onFirst).at(-1)).toBe('one');
    expect(text(onSecond).at(-1)).toBe('two');
  });
});

describe('MajordomoBroker: queue policy', () => {
  it('rejects a correlated request beyond serviceQueueMax with 503 at once', async () => {
    const broker = await startBroker({ serviceQueueMax: 2 });
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const queued = [client.request('none', [b('1')]), client.request('none', [b('2')])];
    const error = await client.request('none', [b('3')]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BrokerRejectedError);
    expect((error as BrokerRejectedError).status).toBe('503');
    expect((error as BrokerRejectedError).retryable).toBe(true);
    expect(broker.stats().queuedRequests).toBe(2);
    await startWorker(broker, { service: 'none', handler: echo });
    expect((await Promise.all(queued)).map(text)).toEqual([['1'], ['2']]);
  });

  it('expires queued requests after requestExpiryMs with 504', async () => {
    const broker = await startBroker({ ...FAST, requestExpiryMs: 100 });
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const error = await client.request('nobody', [b('x')]).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'SLUICE_BROKER_REJECTED', status: '504' });
    expect(broker.stats()).toMatchObject({ expiredRequests: 1, queuedRequests: 0, services: 0 });
  });

  it('answers a plain (RFC 7) request it cannot queue with a status reply, never silence', async () => {
    const broker = await startBroker({ serviceQueueMax: 0 });
    const rejected = waitForEvent(broker, 'request-rejected');
    const client = rawDealer(broker.endpoint);
    await client.send(clientRequestFrames('full', [b('x')]));
    expect(await rejected).toEqual({ service: 'full', status: '503', answered: true });
    const reply = await receiveWithin(client);
    expect(text(reply.slice(0, 3))).toEqual(['', 'MDPC01', 'full']);
    expect(text(reply.slice(3))).toEqual(['503', '[sluice/majordomo] service queue full (serviceQueueMax 0)']);
    expect(broker.stats().services).toBe(0);
  });

  it('refuses a client beyond clientInFlightMax with a reply it can act on, and counts nothing after the replies', async () => {
    const broker = await startBroker({ clientInFlightMax: 2 });
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const held = [client.request('later', [b('1')]), client.request('later', [b('2')])];
    const error = await client.request('later', [b('3')]).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'SLUICE_BROKER_REJECTED', status: '503' });
    expect((error as Error).message).toContain('clientInFlightMax');
    // Another client is not affected by this one's limit.
    const other = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const theirs = other.request('later', [b('4')]);
    await startWorker(broker, { service: 'later', handler: echo });
    expect((await Promise.all([...held, theirs])).map(text)).toEqual([['1'], ['2'], ['4']]);
    // Replies released the held requests: the client may send again.
    expect(text(await client.request('later', [b('5')]))).toEqual(['5']);
  });

  it('refuses requests beyond requestBytesMax (the broker\'s memory for requests) with 503', async () => {
    const broker = await startBroker({ requestBytesMax: 100 });
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const held = client.request('later', [Buffer.alloc(60)]);
    const error = await client.request('later', [Buffer.alloc(60)]).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ status: '503' });
    expect((error as Error).message).toContain('requestBytesMax 100');
    await startWorker(broker, { service: 'later', handler: echo });
    expect((await held)[0].length).toBe(60);
  });

  it('bounds the number of services clients can create', async () => {
    const broker = await startBroker({ servicesMax: 2 });
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    void client.request('s1', [b('x')]).catch(() => undefined);
    void client.request('s2', [b('x')]).catch(() => undefined);
    const error = await client.request('s3', [b('x')]).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ status: '503' });
    expect((error as Error).message).toContain('servicesMax');
    expect(broker.stats().services).toBe(2);
  });
});

describe('MajordomoBroker: MMI (RFC 8)', () => {
  it('answers mmi.service 200 only while a worker is registered, 404 otherwise', async () => {
    const broker = await startBroker();
    const client = startClient({ endpoints: [broker.endpoint] });
    expect(text(await client.request('mmi.service', [b('echo')]))).toEqual(['404']);
    const worker = await startWorker(broker, { service: 'echo', handler: echo });
    expect(text(await client.request('mmi.service', [b('echo')]))).toEqual(['200']);
    expect(await client.hasService('echo')).toBe(true);
    const removed = waitForEvent(broker, 'worker-removed');
    await worker.close();
    expect(await removed).toMatchObject({ service: 'echo', reason: 'disconnected' });
    expect(await client.hasService('echo')).toBe(false);
  });

  it('answers 404 for a service that only has queued requests', async () => {
    const broker = await startBroker();
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    void client.request('pending', [b('x')]).catch(() => undefined);
    expect(await client.hasService('pending')).toBe(false);
    expect(broker.stats().queuedRequests).toBe(1);
  });

  it('answers 501 for unknown mmi.* services', async () => {
    const broker = await startBroker();
    const client = startClient({ endpoints: [broker.endpoint] });
    expect(text(await client.request('mmi.nothing', [b('x')]))).toEqual(['501']);
    expect(text(await client.request('mmi.', [b('x')]))).toEqual(['501']);
  });

  it('answers a plain MMI request exactly like the reference broker', async () => {
    const broker = await startBroker();
    const client = rawDealer(broker.endpoint);
    await client.send(clientRequestFrames('mmi.service', [b('echo')]));
    expect(text(await receiveWithin(client))).toEqual(['', 'MDPC01', 'mmi.service', '404']);
  });

  it('disconnects a worker that registers an mmi.* service (MUST)', async () => {
    const broker = await startBroker();
    const refused = waitForEvent(broker, 'worker-refused');
    const worker = rawDealer(broker.endpoint);
    await worker.send(workerReadyFrames('mmi.service'));
    expect(await refused).toMatchObject({ service: 'mmi.service' });
    expect(text(await receiveWithin(worker))).toEqual(['', 'MDPW01', '\x05']);
    expect(broker.stats().workers).toBe(0);
  });
});

describe('MajordomoBroker: RFC 7 MUSTs on the worker side', () => {
  it('sends REQUEST with precisely one client address frame followed by an empty frame', async () => {
    const broker = await startBroker();
    const worker = await rawWorker(broker, 'svc');
    const client = rawDealer(broker.endpoint);
    await client.send(clientRequestFrames('svc', [b('a'), b('b')]));
    const request = await receiveMatching(worker, isCommand(2));
    expect(request).toHaveLength(7);
    expect(text(request.slice(0, 3))).toEqual(['', 'MDPW01', '\x02']);
    expect(request[3].length).toBeGreaterThan(0);
    expect(request[4].length).toBe(0);
    expect(text(request.slice(5))).toEqual(['a', 'b']);
  });

  it.each([
    ['HEARTBEAT', workerHeartbeatFrames()],
    ['REPLY', workerReplyFrames(b('client'), [b('x')])],
    ['REQUEST', [E, b('MDPW01'), Buffer.from([2]), b('client'), E, b('x')]],
  ])('answers %s before READY with DISCONNECT (valid but unexpected)', async (_name, frames) => {
    const broker = await startBroker();
    const peer = rawDealer(broker.endpoint);
    await peer.send(frames);
    expect(text(await receiveWithin(peer))).toEqual(['', 'MDPW01', '\x05']);
    expect(broker.stats()).toMatchObject({ workers: 0, services: 0, unexpectedCommands: 1 });
  });

  it('takes a DISCONNECT before READY silently', async () => {
    const broker = await startBroker();
    const peer = rawDealer(broker.endpoint);
    await peer.send([E, b('MDPW01'), Buffer.from([5])]);
    await peer.send(clientRequestFrames('mmi.service', [b('x')]));
    expect(text(await receiveWithin(peer))).toEqual(['', 'MDPC01', 'mmi.service', '404']);
    expect(broker.stats().disconnectsSent).toBe(0);
  });

  it('disconnects a worker that sends a second READY and routes nothing more to it', async () => {
    const broker = await startBroker();
    const worker = await rawWorker(broker, 'svc');
    const removed = waitForEvent(broker, 'worker-removed');
    await worker.send(workerReadyFrames('svc'));
    expect(await removed).toMatchObject({ reason: 'duplicate-ready' });
    expect(text(await receiveMatching(worker, isCommand(5)))).toEqual(['', 'MDPW01', '\x05']);
    expect(broker.stats().workers).toBe(0);
  });

  it('disconnects a worker that sends a REPLY while it has no request', async () => {
    const broker = await startBroker();
    const worker = await rawWorker(broker, 'svc');
    const removed = waitForEvent(broker, 'worker-removed');
    await worker.send(workerReplyFrames(b('someone'), [b('x')]));
    expect(await removed).toMatchObject({ reason: 'unexpected-reply' });
    await receiveMatching(worker, isCommand(5));
  });

  it('sends no further commands to a worker after its DISCONNECT (MUST)', async () => {
    const broker = await startBroker({ heartbeatIntervalMs: 50, heartbeatLiveness: 100 });
    const leaving = await rawWorker(broker, 'svc');
    const removed = waitForEvent(broker, 'worker-removed');
    await leaving.send([E, b('MDPW01'), Buffer.from([5])]);
    expect(await removed).toMatchObject({ reason: 'disconnected' });
    // Drain what was sent before the DISCONNECT arrived (heartbeats).
    while (!(await nothingPending(leaving)));
    const staying = await rawWorker(broker, 'svc');
    const client = rawDealer(broker.endpoint);
    await client.send(clientRequestFrames('svc', [b('x')]));
    await receiveMatching(staying, isCommand(2));
    // Two heartbeat intervals pass on the other worker; the one that left hears nothing.
    await receiveMatching(staying, isCommand(4), 2000);
    await receiveMatching(staying, isCommand(4), 2000);
    expect(await nothingPending(leaving)).toBe(true);
    expect(broker.stats().workers).toBe(1);
  });

  it('heartbeats registered workers at heartbeatIntervalMs', async () => {
    const broker = await startBroker({ heartbeatIntervalMs: 50, heartbeatLiveness: 100 });
    const worker = await rawWorker(broker, 'svc');
    const started = Date.now();
    for (let i = 0; i < 3; i += 1) {
      expect(text(await receiveWithin(worker, 2000))).toEqual(['', 'MDPW01', '\x04']);
    }
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
  });

  it('purges a worker that misses heartbeats and 404s its service', async () => {
    const broker = await startBroker(FAST);
    await rawWorker(broker, 'ghost');
    const removed = await waitForEvent(broker, 'worker-removed', undefined, 2000);
    expect(removed).toMatchObject({ service: 'ghost', reason: 'expired' });
    expect(broker.stats()).toMatchObject({ workers: 0, services: 0, workersPurged: 1 });
    const client = startClient({ endpoints: [broker.endpoint] });
    expect(await client.hasService('ghost')).toBe(false);
  });

  it('keeps a worker that heartbeats', async () => {
    // 20 intervals are four times the 5-interval liveness: only the heartbeats keep it.
    const broker = await startBroker({ heartbeatIntervalMs: 50, heartbeatLiveness: 5 });
    const worker = await rawWorker(broker, 'alive');
    for (let i = 0; i < 20; i += 1) {
      await receiveMatching(worker, isCommand(4), 2000);
      await worker.send(workerHeartbeatFrames());
    }
    expect(broker.stats()).toMatchObject({ workers: 1, workersPurged: 0 });
  });

  it('redelivers the request of a worker that died to another worker (busyTimeoutMs for a worker silent while busy)', async () => {
    const broker = await startBroker({ ...FAST, busyTimeoutMs: 300 });
    const dying = await rawWorker(broker, 'svc');
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const reply = client.request('svc', [b('important')]);
    await receiveMatching(dying, isCommand(2));
    dying.close(); // silent: no DISCONNECT, no more heartbeats
    await waitForEvent(broker, 'worker-removed', (event) => event.reason === 'expired', 2000);
    await startWorker(broker, { service: 'svc', handler: echo, ...FAST });
    expect(text(await reply)).toEqual(['important']);
    expect(broker.stats().redeliveredRequests).toBe(1);
  });

  it('keeps the request of a reference-style worker that is silent while it works longer than heartbeat × liveness', async () => {
    const broker = await startBroker(FAST); // expiry 150 ms; busyTimeoutMs 60 s
    const slow = await rawWorker(broker, 'svc');
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const reply = client.request('svc', [b('slow')]);
    const request = await receiveMatching(slow, isCommand(2));
    // Like mdwrkapi: single-threaded, nothing sent while the handler runs. Heartbeats from
    // the broker arrive meanwhile; a purge would show as worker-removed.
    let removed = false;
    broker.once('worker-removed', () => {
      removed = true;
    });
    // The handler "runs" while 10 broker heartbeats arrive (>= 10 × 50 ms, over 3 × the expiry).
    for (let beat = 0; beat < 10; beat++) await receiveMatching(slow, isCommand(4), 5000);
    expect(removed).toBe(false);
    const clientAddress = request[3];
    await slow.send(workerReplyFrames(clientAddress, request.slice(5)));
    expect(text(await reply)).toEqual(['slow']);
    expect(broker.stats()).toMatchObject({ workers: 1, redeliveredRequests: 0 });
  });

  it('still purges a worker that heartbeats while busy and then vanishes, after heartbeat × liveness', async () => {
    const broker = await startBroker(FAST);
    const worker = await rawWorker(broker, 'svc');
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    void client.request('svc', [b('x')]).catch(() => undefined);
    await receiveMatching(worker, isCommand(2));
    const started = Date.now();
    await worker.send(workerHeartbeatFrames()); // a worker that heartbeats while busy
    worker.close();
    await waitForEvent(broker, 'worker-removed', (event) => event.reason === 'expired', 5000);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('gives up with 502 after deliveriesMax lost workers', async () => {
    const broker = await startBroker({ ...FAST, deliveriesMax: 1 });
    const dying = await rawWorker(broker, 'svc');
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000 });
    const reply = client.request('svc', [b('x')]);
    await receiveMatching(dying, isCommand(2));
    await dying.send([E, b('MDPW01'), Buffer.from([5])]);
    await expect(reply).rejects.toMatchObject({ status: '502' });
  });

  it('refuses READY beyond workersMax', async () => {
    const broker = await startBroker({ workersMax: 1 });
    await rawWorker(broker, 'svc');
    const refused = waitForEvent(broker, 'worker-refused');
    const extra = rawDealer(broker.endpoint);
    await extra.send(workerReadyFrames('svc'));
    await refused;
    await receiveMatching(extra, isCommand(5));
    expect(broker.stats().workers).toBe(1);
  });
});

describe('MajordomoBroker: malformed messages', () => {
  const kinds: [string, Buffer[], string][] = [
    ['garbage single frame', [b('\x00garbage\xff')], 'too-few-frames'],
    ['garbage without delimiter', [b('x'), b('MDPC01'), b('echo'), b('hi')], 'missing-delimiter'],
    ['wrong header', [E, b('MDPX01'), b('echo'), b('hi')], 'unknown-protocol'],
    ['client too few frames', [E, b('MDPC01'), b('echo')], 'missing-body'],
    ['header only', [E, b('MDPC01')], 'too-few-frames'],
    ['empty service', [E, b('MDPC01'), E, b('hi')], 'invalid-service-name'],
    ['worker too few frames', [E, b('MDPW01')], 'too-few-frames'],
    ['unknown command', [E, b('MDPW01'), Buffer.from([0x09])], 'unknown-command'],
    ['two-byte command', [E, b('MDPW01'), b('\x01\x01'), b('echo')], 'invalid-command-frame'],
    ['READY without service', [E, b('MDPW01'), Buffer.from([1])], 'too-few-frames'],
    ['reply without envelope', [E, b('MDPW01'), Buffer.from([3]), b('body')], 'missing-envelope'],
  ];

  it.each(kinds)('drops %s, counts it and keeps serving', async (_name, frames, reason) => {
    const broker = await startBroker();
    await startWorker(broker, { service: 'echo', handler: echo });
    const peer = rawDealer(broker.endpoint);
    await peer.send(frames);
    await peer.send(clientRequestFrames('echo', [b('still works')]));
    expect(text(await receiveWithin(peer))).toEqual(['', 'MDPC01', 'echo', 'still works']);
    expect(broker.stats().malformed[reason as keyof ReturnType<MajordomoBroker['stats']>['malformed']]).toBe(1);
    expect(broker.stats()).toMatchObject({ malformedTotal: 1, internalErrors: 0, workers: 1 });
  });

  it('drops every kind in a row from one peer, then a valid request still works', async () => {
    const broker = await startBroker();
    await startWorker(broker, { service: 'echo', handler: echo });
    const peer = rawDealer(broker.endpoint);
    for (const [, frames] of kinds) await peer.send(frames);
    await peer.send(clientRequestFrames('echo', [b('ok')]));
    expect(text(await receiveWithin(peer))).toEqual(['', 'MDPC01', 'echo', 'ok']);
    expect(broker.stats().malformedTotal).toBe(kinds.length);
  });

  it('treats a registered worker that sends a reply without envelope as invalid (disconnects it)', async () => {
    const broker = await startBroker();
    const worker = await rawWorker(broker, 'svc');
    const client = rawDealer(broker.endpoint);
    await client.send(clientRequestFrames('svc', [b('x')]));
    await receiveMatching(worker, isCommand(2));
    const removed = waitForEvent(broker, 'worker-removed');
    await worker.send([E, b('MDPW01'), Buffer.from([3]), b('no envelope')]);
    expect(await removed).toMatchObject({ reason: 'invalid-message' });
    await receiveMatching(worker, isCommand(5));
    expect(broker.stats()).toMatchObject({ malformed: { 'missing-envelope': 1 }, queuedRequests: 1 });
  });

  it('does not register services or workers from malformed input', async () => {
    const broker = await startBroker();
    const peer = rawDealer(broker.endpoint);
    const malformed = waitForEvents(broker, 'malformed', 3);
    await peer.send([E, b('MDPW01'), Buffer.from([1]), b('svc'), b('extra')]);
    await peer.send([E, b('MDPW01'), Buffer.from([1]), b('bad\x01name')]);
    await peer.send([E, b('MDPC01'), b('bad\x7fname'), b('x')]);
    expect((await malformed).map((event) => event.reason)).toEqual([
      'unexpected-frames',
      'invalid-service-name',
      'invalid-service-name',
    ]);
    expect(broker.stats()).toMatchObject({ workers: 0, services: 0, queuedRequests: 0 });
  });

  it('lets ZeroMQ drop a peer that sends a frame above frameBytesMax, and keeps serving', async () => {
    const broker = await startBroker({ frameBytesMax: 1024 });
    const sizes: number[] = [];
    await startWorker(broker, {
      service: 'echo',
      handler: async (request) => {
        sizes.push(request[0].length);
        return request;
      },
    });
    const big = rawDealer(broker.endpoint);
    await big.send(clientRequestFrames('echo', [Buffer.alloc(4096, 0x61)]));
    const client = startClient({ endpoints: [broker.endpoint] });
    expect(text(await client.request('echo', [b('small')]))).toEqual(['small']);
    expect(sizes).toEqual([5]);
    expect(broker.stats().internalErrors).toBe(0);
  });

  it('answers a correlated request with a rejection that names its id', async () => {
    const broker = await startBroker({ serviceQueueMax: 0 });
    const peer = rawDealer(broker.endpoint);
    const correlation = encodeCorrelation('message', 42n);
    await peer.send(clientRequestFrames('svc', [correlation, b('x')]));
    const reply = await receiveWithin(peer);
    expect(text(reply.slice(0, 3))).toEqual(['', 'MDPC01', 'svc']);
    expect(reply[3].toString('hex')).toBe(correlation.toString('hex').replace(/^(.{8})00/, '$101'));
    expect(text(reply.slice(4, 5))).toEqual(['503']);
  });
});
