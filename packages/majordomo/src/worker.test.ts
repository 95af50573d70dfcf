import { describe, expect, it } from 'vitest';
import { encodeCorrelation } from './correlation.js';
import { InvalidBrokerOptionsError } from './errors.js';
import { workerDisconnectFrames, workerHeartbeatFrames, workerRequestFrames } from './mdp.js';
import { MajordomoWorker, createWorker } from './worker.js';
import type { WorkerOptions } from './worker-options.js';
import { endpointOf, rawRouter, receiveMatching, receiveWithin, text, track, waitForEvent } from './testing/harness.js';

const b = (value: string): Buffer => Buffer.from(value, 'latin1');
const E = Buffer.alloc(0);
const echo = async (request: Buffer[]): Promise<Buffer[]> => request;
/** Frames as a ROUTER sees them: [identity, "", "MDPW01", command, ...]. */
const isCommand = (command: number) => (frames: Buffer[]) => frames[3]?.length === 1 && frames[3][0] === command;

function worker(options: Partial<WorkerOptions> & { endpoint: string }): MajordomoWorker {
  return track(
    createWorker({
      service: 'echo',
      handler: echo,
      // The stand-in broker does not heartbeat: only the silence test uses a short liveness.
      heartbeatIntervalMs: 50,
      heartbeatLiveness: 1000,
      reconnectDelayMs: 50,
      ...options,
    }),
  );
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe('MajordomoWorker against a stand-in broker (raw ROUTER)', () => {
  it('opens with READY, exactly as RFC 7 frames it', async () => {
    const router = await rawRouter();
    worker({ endpoint: endpointOf(router), service: 'echo' });
    const ready = await receiveWithin(router);
    expect(text(ready.slice(1))).toEqual(['', 'MDPW01', '\x01', 'echo']);
  });

  it('answers REQUEST with REPLY carrying the client envelope', async () => {
    const router = await rawRouter();
    worker({ endpoint: endpointOf(router) });
    const [identity] = await receiveMatching(router, isCommand(1));
    await router.send(workerRequestFrames(identity, b('CLIENT'), [b('a'), b('b')]));
    const reply = await receiveMatching(router, isCommand(3));
    expect(reply[0]).toEqual(identity);
    expect(text(reply.slice(1))).toEqual(['', 'MDPW01', '\x03', 'CLIENT', '', 'a', 'b']);
  });

  it('strips and echoes a correlation frame; sends one empty frame for an empty plain reply', async () => {
    const router = await rawRouter();
    const seen: string[][] = [];
    worker({
      endpoint: endpointOf(router),
      handler: async (request) => {
        seen.push(text(request));
        return [];
      },
    });
    const [identity] = await receiveMatching(router, isCommand(1));
    const correlation = encodeCorrelation('message', 7n);
    await router.send(workerRequestFrames(identity, b('C'), [correlation, b('x')]));
    const correlated = await receiveMatching(router, isCommand(3));
    expect(correlated.slice(6)).toEqual([correlation]);
    await router.send(workerRequestFrames(identity, b('C'), [b('plain')]));
    const plain = await receiveMatching(router, isCommand(3));
    expect(plain.slice(6)).toEqual([E]);
    expect(seen).toEqual([['x'], ['plain']]);
  });

  it('sends HEARTBEATs at the interval, also while the handler is busy', async () => {
    const router = await rawRouter();
    const busy = gate();
    const instance = worker({
      endpoint: endpointOf(router),
      handler: async (request) => {
        await busy.promise;
        return request;
      },
    });
    const [identity] = await receiveMatching(router, isCommand(1));
    await router.send(workerRequestFrames(identity, b('C'), [b('x')]));
    for (let i = 0; i < 3; i += 1) {
      expect(text((await receiveMatching(router, isCommand(4), 2000)).slice(1))).toEqual(['', 'MDPW01', '\x04']);
    }
    busy.open();
    await receiveMatching(router, isCommand(3));
    expect(instance.stats().requestsHandled).toBe(1);
  });

  it('reconnects on a new socket when the broker is silent for liveness × interval', async () => {
    const router = await rawRouter();
    const instance = worker({ endpoint: endpointOf(router), heartbeatLiveness: 3 });
    const reconnecting = waitForEvent(instance, 'reconnecting');
    const [first] = await receiveMatching(router, isCommand(1));
    expect(await reconnecting).toMatchObject({ reason: 'broker-silent' });
    const [second] = await receiveMatching(router, isCommand(1), 2000);
    expect(second.equals(first)).toBe(false);
  });

  it('stays connected while the broker heartbeats', async () => {
    const router = await rawRouter();
    // 20 intervals are four times the 5-interval liveness: only the heartbeats keep it.
    const instance = worker({ endpoint: endpointOf(router), heartbeatLiveness: 5 });
    const [identity] = await receiveMatching(router, isCommand(1));
    for (let i = 0; i < 20; i += 1) {
      await receiveMatching(router, isCommand(4), 2000);
      await router.send(workerHeartbeatFrames(identity));
    }
    expect(instance.stats().reconnects).toBe(0);
  });

  it('on DISCONNECT closes its socket and registers again on a new one', async () => {
    const router = await rawRouter();
    const instance = worker({ endpoint: endpointOf(router), reconnectDelayMs: 60_000 });
    const [first] = await receiveMatching(router, isCommand(1));
    await router.send(workerHeartbeatFrames(first)); // the broker accepted this connection
    const reconnecting = waitForEvent(instance, 'reconnecting');
    await router.send(workerDisconnectFrames(first));
    expect(await reconnecting).toMatchObject({ reason: 'broker-disconnect' });
    const [second] = await receiveMatching(router, isCommand(1), 2000);
    expect(second.equals(first)).toBe(false);
  });

  it('waits reconnectDelayMs after a DISCONNECT that refused its READY (no hot loop)', async () => {
    const router = await rawRouter();
    worker({ endpoint: endpointOf(router), reconnectDelayMs: 150 });
    const [first] = await receiveMatching(router, isCommand(1));
    const refusedAt = Date.now();
    await router.send(workerDisconnectFrames(first));
    await receiveMatching(router, isCommand(1), 2000);
    expect(Date.now() - refusedAt).toBeGreaterThanOrEqual(140);
  });

  it('discards the reply of a request whose connection was dropped', async () => {
    const router = await rawRouter();
    const release = gate();
    const instance = worker({
      endpoint: endpointOf(router),
      handler: async (request) => {
        await release.promise;
        return request;
      },
    });
    const [first] = await receiveMatching(router, isCommand(1));
    await router.send(workerRequestFrames(first, b('C'), [b('x')]));
    await router.send(workerDisconnectFrames(first));
    const [second] = await receiveMatching(router, isCommand(1), 2000);
    release.open();
    // The new connection is idle: a new request is answered, the old one never is.
    await router.send(workerRequestFrames(second, b('D'), [b('y')]));
    const reply = await receiveMatching(router, isCommand(3));
    expect(text(reply.slice(4))).toEqual(['D', '', 'y']);
    expect(instance.stats().requestsHandled).toBe(2);
  });

  it('runs `concurrency` connections, each with one request at a time', async () => {
    const router = await rawRouter();
    const all = gate();
    let entered = 0;
    worker({
      endpoint: endpointOf(router),
      concurrency: 3,
      handler: async (request) => {
        entered += 1;
        if (entered === 3) all.open();
        await all.promise;
        return request;
      },
    });
    const identities: Buffer[] = [];
    while (identities.length < 3) identities.push((await receiveMatching(router, isCommand(1)))[0]);
    expect(new Set(identities.map((id) => id.toString('hex'))).size).toBe(3);
    for (const identity of identities) await router.send(workerRequestFrames(identity, b('C'), [b('x')]));
    for (let i = 0; i < 3; i += 1) await receiveMatching(router, isCommand(3));
    expect(entered).toBe(3);
  });

  it('ignores malformed messages and unexpected commands, and keeps serving', async () => {
    const router = await rawRouter();
    const instance = worker({ endpoint: endpointOf(router) });
    const [identity] = await receiveMatching(router, isCommand(1));
    await router.send([identity, b('garbage')]);
    await router.send([identity, E, b('MDPW01'), Buffer.from([9])]);
    await router.send([identity, E, b('MDPW01'), Buffer.from([2]), b('no envelope')]);
    await router.send([identity, E, b('MDPW01'), Buffer.from([1]), b('echo')]);
    await router.send(workerRequestFrames(identity, b('C'), [b('ok')]));
    const reply = await receiveMatching(router, isCommand(3));
    expect(text(reply.slice(4))).toEqual(['C', '', 'ok']);
    expect(instance.stats()).toMatchObject({ malformedMessages: 3, unexpectedCommands: 1, reconnects: 0 });
  });

  it('answers a plain request whose handler throws with "500" and the message', async () => {
    const router = await rawRouter();
    worker({
      endpoint: endpointOf(router),
      handler: async () => {
        throw new Error('nope');
      },
    });
    const [identity] = await receiveMatching(router, isCommand(1));
    await router.send(workerRequestFrames(identity, b('C'), [b('x')]));
    const reply = await receiveMatching(router, isCommand(3));
    expect(text(reply.slice(6))).toEqual(['500', 'nope']);
  });

  it('sends DISCONNECT on close', async () => {
    const router = await rawRouter();
    const instance = worker({ endpoint: endpointOf(router) });
    await receiveMatching(router, isCommand(1));
    await instance.close();
    const disconnect = await receiveMatching(router, isCommand(5));
    expect(text(disconnect.slice(1))).toEqual(['', 'MDPW01', '\x05']);
  });

  it('rejects invalid options, including the reserved mmi. namespace', () => {
    expect(
      () => new MajordomoWorker({ endpoint: 'nowhere', service: 'mmi.service', handler: echo, concurrency: 0 }),
    ).toThrow(InvalidBrokerOptionsError);
    try {
      new MajordomoWorker({ endpoint: 'nowhere', service: 'mmi.service', handler: echo, concurrency: 0 });
    } catch (error) {
      expect((error as InvalidBrokerOptionsError).problems).toHaveLength(3);
    }
  });
});
