import { describe, expect, it } from 'vitest';
import { MajordomoClient } from './client.js';
import {
  BrokerClosedError,
  BrokerTimeoutError,
  ClientOverloadedError,
  InvalidBrokerOptionsError,
  InvalidRequestError,
  RequestAbortedError,
  WorkerFailedError,
} from './errors.js';
import {
  FAST,
  deadEndpoint,
  rawWorker,
  receiveMatching,
  startBroker,
  startClient,
  startWorker,
  text,
  waitForEvent,
} from './testing/harness.js';
import { workerReplyFrames } from './mdp.js';

const b = (value: string): Buffer => Buffer.from(value, 'latin1');
const echo = async (request: Buffer[]): Promise<Buffer[]> => request;
const isRequest = (frames: Buffer[]) => frames[2]?.length === 1 && frames[2][0] === 2;

/** A promise with its resolver, to hold a handler until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe('MajordomoClient: correlated mode (pipelining)', () => {
  it('matches replies that come back out of order to their requests', async () => {
    const broker = await startBroker();
    const slow = gate();
    await startWorker(broker, {
      service: 'work',
      concurrency: 2,
      handler: async ([body]) => {
        if (body.toString() === 'slow') await slow.promise;
        return [b(`done ${body.toString()}`)];
      },
    });
    const client = startClient({ endpoints: [broker.endpoint] });
    const order: string[] = [];
    const slowReply = client.request('work', [b('slow')]).then((reply) => {
      order.push('slow');
      return reply;
    });
    const fastReply = client.request('work', [b('fast')]).then((reply) => {
      order.push('fast');
      return reply;
    });
    expect(text(await fastReply)).toEqual(['done fast']);
    slow.open();
    expect(text(await slowReply)).toEqual(['done slow']);
    expect(order).toEqual(['fast', 'slow']);
  });

  it('pipelines hundreds of requests over several workers and services', async () => {
    const broker = await startBroker();
    let delay = 0;
    const handler = async (request: Buffer[]): Promise<Buffer[]> => {
      delay = (delay + 7) % 5;
      if (delay > 0) await new Promise((resolve) => setImmediate(resolve));
      return [b('re:'), ...request];
    };
    await startWorker(broker, { service: 'a', handler, concurrency: 3 });
    await startWorker(broker, { service: 'b', handler, concurrency: 2 });
    const client = startClient({ endpoints: [broker.endpoint] });
    const requests = Array.from({ length: 400 }, (_, n) => {
      const service = n % 2 === 0 ? 'a' : 'b';
      return client.request(service, [b(`${service}${n}`), b(String(n))]).then(text);
    });
    const replies = await Promise.all(requests);
    replies.forEach((reply, n) => expect(reply).toEqual(['re:', `${n % 2 === 0 ? 'a' : 'b'}${n}`, String(n)]));
    expect(client.stats()).toMatchObject({ outstanding: 0, staleReplies: 0, malformedReplies: 0 });
  });

  it('accepts an empty body and an empty reply', async () => {
    const broker = await startBroker();
    await startWorker(broker, { service: 'nothing', handler: async () => [] });
    const client = startClient({ endpoints: [broker.endpoint] });
    expect(await client.request('nothing', [])).toEqual([]);
  });

  it('reports a handler failure as WorkerFailedError', async () => {
    const broker = await startBroker();
    const worker = await startWorker(broker, {
      service: 'boom',
      handler: async () => {
        throw new Error('disk on fire');
      },
    });
    const failed = waitForEvent(worker, 'handler-error');
    const client = startClient({ endpoints: [broker.endpoint] });
    const error = await client.request('boom', [b('x')]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(WorkerFailedError);
    expect((error as Error).message).toContain('disk on fire');
    expect((await failed).error).toBeInstanceOf(Error);
    // The worker is still registered and serving.
    expect(await client.hasService('boom')).toBe(true);
  });

  it('aborts a request through its signal and discards the late reply', async () => {
    const broker = await startBroker();
    const release = gate();
    await startWorker(broker, {
      service: 'held',
      handler: async (request) => {
        await release.promise;
        return request;
      },
    });
    const client = startClient({ endpoints: [broker.endpoint] });
    const controller = new AbortController();
    const reply = client.request('held', [b('x')], { signal: controller.signal });
    controller.abort(new Error('user gave up'));
    const error = await reply.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RequestAbortedError);
    expect((error as Error).cause).toBeInstanceOf(Error);
    release.open();
    expect(text(await client.request('held', [b('next')]))).toEqual(['next']);
    expect(client.stats()).toMatchObject({ staleReplies: 1, outstanding: 0 });
  });

  it('rejects at once when the signal is already aborted', async () => {
    const broker = await startBroker();
    const client = startClient({ endpoints: [broker.endpoint] });
    await expect(client.request('x', [b('x')], { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(
      RequestAbortedError,
    );
  });

  it('rejects beyond outstandingMax with ClientOverloadedError', async () => {
    const broker = await startBroker();
    const client = startClient({ endpoints: [broker.endpoint], outstandingMax: 2, timeoutMs: 10_000 });
    const open = [client.request('q', [b('1')]), client.request('q', [b('2')])];
    await expect(client.request('q', [b('3')])).rejects.toBeInstanceOf(ClientOverloadedError);
    await client.close();
    for (const request of open) await expect(request).rejects.toBeInstanceOf(BrokerClosedError);
    await expect(client.request('q', [b('4')])).rejects.toBeInstanceOf(BrokerClosedError);
  });

  it('rejects invalid requests and options clearly', async () => {
    const broker = await startBroker();
    const client = startClient({ endpoints: [broker.endpoint] });
    await expect(client.request('', [b('x')])).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(client.request('a\u0000b', [b('x')])).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(client.request('x', ['not a buffer' as unknown as Buffer])).rejects.toBeInstanceOf(
      InvalidRequestError,
    );
    expect(() => new MajordomoClient({ endpoints: [], timeoutMs: -1 })).toThrow(InvalidBrokerOptionsError);
  });
});

describe('MajordomoClient: rfc7 mode', () => {
  it('keeps one request per service outstanding and answers each in order', async () => {
    const broker = await startBroker();
    let inFlight = 0;
    let inFlightMax = 0;
    await startWorker(broker, {
      service: 'serial',
      concurrency: 3,
      handler: async (request) => {
        inFlight += 1;
        inFlightMax = Math.max(inFlightMax, inFlight);
        await new Promise((resolve) => setImmediate(resolve));
        inFlight -= 1;
        return request;
      },
    });
    const client = startClient({ endpoints: [broker.endpoint], mode: 'rfc7' });
    const replies = await Promise.all(
      Array.from({ length: 30 }, (_, n) => client.request('serial', [b(`m${n}`)]).then(text)),
    );
    replies.forEach((reply, n) => expect(reply).toEqual([`m${n}`]));
    expect(inFlightMax).toBe(1);
  });

  it('runs requests to different services concurrently', async () => {
    const broker = await startBroker();
    const both = gate();
    let entered = 0;
    const handler = async (request: Buffer[]): Promise<Buffer[]> => {
      entered += 1;
      if (entered === 2) both.open();
      await both.promise;
      return request;
    };
    await startWorker(broker, { service: 'one', handler });
    await startWorker(broker, { service: 'two', handler });
    const client = startClient({ endpoints: [broker.endpoint], mode: 'rfc7' });
    const replies = await Promise.all([client.request('one', [b('1')]), client.request('two', [b('2')])]);
    expect(replies.map(text)).toEqual([['1'], ['2']]);
  });

  it('keeps an aborted request lane busy until its reply, so replies never cross', async () => {
    const broker = await startBroker();
    const worker = await rawWorker(broker, 'svc');
    const client = startClient({ endpoints: [broker.endpoint], mode: 'rfc7', timeoutMs: 10_000 });
    const controller = new AbortController();
    const first = client.request('svc', [b('first')], { signal: controller.signal });
    const firstAtWorker = await receiveMatching(worker, isRequest);
    const second = client.request('svc', [b('second')]);
    controller.abort();
    await expect(first).rejects.toBeInstanceOf(RequestAbortedError);
    await worker.send(workerReplyFrames(firstAtWorker[3], [b('reply to first')]));
    const secondAtWorker = await receiveMatching(worker, isRequest);
    expect(text(secondAtWorker).at(-1)).toBe('second');
    await worker.send(workerReplyFrames(secondAtWorker[3], [b('reply to second')]));
    expect(text(await second)).toEqual(['reply to second']);
    expect(client.stats().staleReplies).toBe(1);
  });

  it('needs at least one body frame (RFC 7: 4 or more frames)', async () => {
    const broker = await startBroker();
    const client = startClient({ endpoints: [broker.endpoint], mode: 'rfc7' });
    await expect(client.request('x', [])).rejects.toBeInstanceOf(InvalidRequestError);
  });
});

describe('MajordomoClient: fail-over and retries', () => {
  it('fails over from a closed broker to the next one and gets the reply there', async () => {
    const first = await startBroker();
    const second = await startBroker();
    await startWorker(first, { service: 'echo', handler: async () => [b('from first')] });
    await startWorker(second, { service: 'echo', handler: async () => [b('from second')] });
    const client = startClient({ endpoints: [first.endpoint, second.endpoint], timeoutMs: 300 });
    expect(text(await client.request('echo', [b('x')]))).toEqual(['from first']);
    await first.close();
    const failover = waitForEvent(client, 'failover');
    expect(text(await client.request('echo', [b('x')]))).toEqual(['from second']);
    expect(await failover).toMatchObject({ from: first.endpoint, to: second.endpoint });
    expect(client.stats()).toMatchObject({ endpoint: second.endpoint, failovers: 1, outstanding: 0 });
  });

  it('resends every outstanding pipelined request after a fail-over', async () => {
    const dead = await deadEndpoint();
    const broker = await startBroker();
    await startWorker(broker, { service: 'echo', handler: echo, concurrency: 2 });
    const client = startClient({ endpoints: [dead, broker.endpoint], timeoutMs: 200 });
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, n) => client.request('echo', [b(String(n))]).then(text)),
    );
    replies.forEach((reply, n) => expect(reply).toEqual([String(n)]));
    expect(client.stats().failovers).toBe(1);
  });

  it('fails over in rfc7 mode too', async () => {
    const dead = await deadEndpoint();
    const broker = await startBroker();
    await startWorker(broker, { service: 'echo', handler: echo });
    const client = startClient({ endpoints: [dead, broker.endpoint], timeoutMs: 200, mode: 'rfc7' });
    const replies = await Promise.all([1, 2, 3].map((n) => client.request('echo', [b(String(n))]).then(text)));
    expect(replies).toEqual([['1'], ['2'], ['3']]);
  });

  it('gives up after attemptsMax attempts with BrokerTimeoutError', async () => {
    const dead = await deadEndpoint();
    const client = startClient({ endpoints: [dead], timeoutMs: 100, attemptsMax: 3 });
    const started = Date.now();
    const error = await client.request('echo', [b('x')]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BrokerTimeoutError);
    expect(error).toMatchObject({ attempts: 3, timeoutMs: 100, retryable: true });
    expect((error as Error).message).toContain(dead);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(client.stats()).toMatchObject({ timeouts: 3, outstanding: 0 });
  });

  it('fails a pipeline of requests to dead brokers in about attemptsMax × timeoutMs', async () => {
    const client = startClient({ endpoints: [await deadEndpoint(), await deadEndpoint()], timeoutMs: 100, attemptsMax: 2 });
    const started = Date.now();
    const results = await Promise.allSettled(Array.from({ length: 100 }, () => client.request('x', [b('x')])));
    expect(results.every((result) => result.status === 'rejected')).toBe(true);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('honours a per-request timeout', async () => {
    const broker = await startBroker(FAST);
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 10_000, attemptsMax: 1 });
    const error = await client.request('nobody', [b('x')], { timeoutMs: 50 }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'SLUICE_BROKER_TIMEOUT', attempts: 1, timeoutMs: 50 });
  });
});
