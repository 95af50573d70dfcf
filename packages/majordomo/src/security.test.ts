import { existsSync, readdirSync } from 'node:fs';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MajordomoBroker } from './broker.js';
import { MajordomoClient } from './client.js';
import { deriveCurvePublicKey, generateCurveKeyPair, isCurveKey, type CurveKeyPair } from './curve.js';
import { BrokerAuthenticationError, BrokerTimeoutError, InvalidBrokerOptionsError } from './errors.js';
import { workerReadyFrames } from './mdp.js';
import {
  FAST,
  rawDealer,
  receiveWithin,
  startBroker,
  startClient,
  startWorker,
  text,
  track,
  waitForEvent,
} from './testing/harness.js';
import { MajordomoWorker } from './worker.js';
import { decodeZ85, encodeZ85 } from './z85.js';

/**
 * Invariants: with `curve`, a peer is served only after a CURVE handshake whose public key the
 * broker's allow-list holds; a refused, plain-text or wrongly keyed peer never gets a message
 * through; secret keys appear in no options object, inspection, event or error message.
 */

const b = (value: string): Buffer => Buffer.from(value, 'latin1');
const echo = async (request: Buffer[]): Promise<Buffer[]> => request;

const server = generateCurveKeyPair();
const alice = generateCurveKeyPair(); // an allowed client
const mallory = generateCurveKeyPair(); // a key nobody allowed
const workerKeys = generateCurveKeyPair();

const curveOf = (pair: CurveKeyPair, serverPublicKey = server.publicKey) => ({
  serverPublicKey,
  publicKey: pair.publicKey,
  secretKey: pair.secretKey,
});

async function curveBroker(allowedClientKeys = [alice.publicKey, workerKeys.publicKey]): Promise<MajordomoBroker> {
  return startBroker({ ...FAST, curve: { ...server, allowedClientKeys } });
}

describe('Z85 and CURVE keys', () => {
  it('encodes the RFC 32 test vector and round-trips keys', () => {
    const bytes = Buffer.from('864fd26fb559f75b', 'hex');
    expect(encodeZ85(bytes)).toBe('HelloWorld');
    expect(decodeZ85('HelloWorld')).toEqual(bytes);
    expect(encodeZ85(decodeZ85(server.publicKey) as Buffer)).toBe(server.publicKey);
  });

  it('refuses text that is not Z85', () => {
    expect(decodeZ85('Hello')).toBeDefined();
    expect(decodeZ85('Hell')).toBeUndefined(); // not a multiple of 5
    expect(decodeZ85('Hell"')).toBeUndefined(); // not in the alphabet
    expect(decodeZ85('%%%%%')).toBeUndefined(); // above 2^32 - 1
    expect(isCurveKey(server.publicKey)).toBe(true);
    expect(isCurveKey(server.publicKey.slice(1))).toBe(false);
  });

  it("derives libzmq's public key from the secret key", () => {
    for (let index = 0; index < 20; index += 1) {
      const pair = generateCurveKeyPair();
      expect(deriveCurvePublicKey(pair.secretKey)).toBe(pair.publicKey);
    }
    expect(deriveCurvePublicKey('not a key')).toBeUndefined();
  });
});

describe('CURVE options', () => {
  it('lists every problem at once and never repeats a secret key', () => {
    const secret = generateCurveKeyPair().secretKey;
    const attempt = () =>
      new MajordomoBroker({
        endpoint: 'inproc://secure',
        curve: { secretKey: secret.slice(0, 39), allowedClientKeys: ['nope', alice.publicKey], allowedWorkerKeys: [] },
      });
    expect(attempt).toThrow(InvalidBrokerOptionsError);
    const error = (() => {
      try {
        attempt();
      } catch (caught) {
        return caught as InvalidBrokerOptionsError;
      }
      throw new Error('expected an error');
    })();
    expect(error.problems).toHaveLength(4); // secretKey, allowedClientKeys[0], allowedWorkerKeys, inproc
    expect(error.message).toContain('curve.secretKey must be a CURVE secret key');
    expect(error.message).toContain('entries 0 are not');
    expect(error.message).toContain('needs workerEndpoint');
    expect(error.message).toContain('inproc');
    expect(error.message).not.toContain(secret.slice(0, 39));
    expect(error.message).not.toContain(secret.slice(0, 10));
  });

  it('refuses a public key of another pair without printing either key', () => {
    const other = generateCurveKeyPair();
    const problems = (options: () => unknown): string[] => {
      try {
        options();
      } catch (error) {
        return [...(error as InvalidBrokerOptionsError).problems];
      }
      return [];
    };
    const brokerProblems = problems(
      () => new MajordomoBroker({ endpoint: 'tcp://127.0.0.1:*', curve: { secretKey: server.secretKey, publicKey: other.publicKey } }),
    );
    expect(brokerProblems).toEqual([expect.stringContaining('does not belong to curve.secretKey')]);
    // A secret key pasted into a public key's field must not be echoed either.
    const clientProblems = problems(
      () =>
        new MajordomoClient({
          endpoints: ['tcp://127.0.0.1:1'],
          curve: { serverPublicKey: 'short', secretKey: alice.secretKey, publicKey: server.secretKey },
        }),
    );
    expect(clientProblems).toHaveLength(2);
    expect(clientProblems.join(' ')).not.toContain(server.secretKey);
    expect(clientProblems.join(' ')).not.toContain(alice.secretKey);
  });

  it('keeps secret keys out of options and inspection; derives public keys', async () => {
    const broker = await startBroker({ curve: { secretKey: server.secretKey } });
    expect(broker.curvePublicKey).toBe(server.publicKey);
    const client = startClient({ endpoints: [broker.endpoint], curve: { serverPublicKey: server.publicKey, secretKey: alice.secretKey } });
    expect(client.options.curve).toEqual({ serverPublicKey: server.publicKey, publicKey: alice.publicKey });
    const worker = track(
      new MajordomoWorker({ endpoint: broker.endpoint, service: 'echo', handler: echo, curve: curveOf(workerKeys) }),
    );
    for (const [secret, holder] of [
      [server.secretKey, broker],
      [alice.secretKey, client],
      [workerKeys.secretKey, worker],
    ] as const) {
      expect(JSON.stringify(holder.options)).not.toContain(secret);
      expect(inspect(holder, { depth: 6, showHidden: false })).not.toContain(secret);
    }
  });
});

describe('CURVE broker: clients', () => {
  it('serves a client whose public key is allowed, end to end encrypted', async () => {
    const broker = await curveBroker();
    const accepted: string[] = [];
    broker.on('peer-accepted', (event) => accepted.push(event.publicKey ?? ''));
    await startWorker(broker, { ...FAST, service: 'echo', handler: echo, curve: curveOf(workerKeys) });
    const client = startClient({ endpoints: [broker.endpoint], curve: curveOf(alice) });
    expect(text(await client.request('echo', [b('hello')]))).toEqual(['hello']);
    expect(await client.hasService('echo')).toBe(true);
    expect(accepted).toEqual(expect.arrayContaining([alice.publicKey, workerKeys.publicKey]));
    expect(broker.stats()).toMatchObject({ peersAccepted: 2, peersRefused: 0 });
  });

  it('refuses an unknown key: the client reports BrokerAuthenticationError quickly, nothing reaches the worker', async () => {
    const broker = await curveBroker();
    const worker = await startWorker(broker, { ...FAST, service: 'echo', handler: echo, curve: curveOf(workerKeys) });
    const refused = waitForEvent(broker, 'peer-refused', (event) => event.publicKey === mallory.publicKey);
    const client = startClient({ endpoints: [broker.endpoint], curve: curveOf(mallory), timeoutMs: 5000, attemptsMax: 3 });
    const started = Date.now();
    const error = await client.request('echo', [b('let me in')]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BrokerAuthenticationError);
    expect(error).toMatchObject({ failure: 'refused', publicKey: mallory.publicKey, retryable: false });
    expect((error as Error).message).toContain("allowedClientKeys");
    expect((error as Error).message).not.toContain(mallory.secretKey);
    expect(Date.now() - started).toBeLessThan(5000); // no waiting for timeoutMs
    expect(await refused).toMatchObject({ status: '400', address: '127.0.0.1', endpoint: broker.endpoint });
    expect(client.stats().handshakeFailures).toBeGreaterThanOrEqual(1);
    expect(worker.stats().requestsHandled).toBe(0);
    expect(broker.stats().requestsDispatched).toBe(0);
  });

  it('does not let a plain-text client talk to a CURVE broker', async () => {
    const broker = await curveBroker();
    await startWorker(broker, { ...FAST, service: 'echo', handler: echo, curve: curveOf(workerKeys) });
    const client = startClient({ endpoints: [broker.endpoint], timeoutMs: 200, attemptsMax: 2 });
    const error = await client.request('echo', [b('plain')]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BrokerTimeoutError);
    const before = broker.stats();
    expect(before.requestsDispatched).toBe(0);
    // Only the worker's messages ever arrived: READY and heartbeats, no client request.
    expect(before.messagesReceived).toBeGreaterThan(0);
    expect(before.mmiRequests).toBe(0);
  });

  it('a CURVE client reports a broker without CURVE as a mechanism mismatch', async () => {
    const broker = await startBroker(FAST);
    const client = startClient({ endpoints: [broker.endpoint], curve: curveOf(alice), timeoutMs: 5000 });
    const error = await client.request('echo', [b('x')]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BrokerAuthenticationError);
    expect(error).toMatchObject({ failure: 'mechanism-mismatch' });
    expect(broker.stats().messagesReceived).toBe(0);
  });

  it('a client with the wrong server key is never served and says so', async () => {
    const broker = await curveBroker();
    const impostor = generateCurveKeyPair();
    const client = startClient({
      endpoints: [broker.endpoint],
      curve: curveOf(alice, impostor.publicKey),
      timeoutMs: 300,
      attemptsMax: 2,
    });
    const error = await client.request('echo', [b('x')]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BrokerAuthenticationError);
    expect(error).toMatchObject({ failure: 'failed' });
    expect((error as Error).message).toContain('serverPublicKey');
    expect(broker.stats()).toMatchObject({ messagesReceived: 0, peersAccepted: 0 });
  });

  it('asks a key policy function, which may be async, and refuses on a policy failure', async () => {
    const asked: string[] = [];
    const broker = await startBroker({
      ...FAST,
      curve: {
        ...server,
        allowedClientKeys: async (key) => {
          asked.push(key);
          if (key === mallory.publicKey) throw new Error('directory unavailable');
          return key === alice.publicKey || key === workerKeys.publicKey;
        },
      },
    });
    await startWorker(broker, { ...FAST, service: 'echo', handler: echo, curve: curveOf(workerKeys) });
    const client = startClient({ endpoints: [broker.endpoint], curve: curveOf(alice) });
    expect(text(await client.request('echo', [b('ok')]))).toEqual(['ok']);
    expect(asked).toEqual(expect.arrayContaining([alice.publicKey, workerKeys.publicKey]));

    const refused = waitForEvent(broker, 'peer-refused');
    const stranger = startClient({ endpoints: [broker.endpoint], curve: curveOf(mallory), attemptsMax: 1 });
    await expect(stranger.request('echo', [b('x')])).rejects.toBeInstanceOf(BrokerAuthenticationError);
    const event = await refused;
    expect(event.status).toBe('500');
    expect((event.error as Error).message).toBe('directory unavailable');
  });

  it('runs two CURVE brokers in one process, each with its own ZAP handler and allow-list', async () => {
    const first = await curveBroker([alice.publicKey]);
    const second = await curveBroker([mallory.publicKey]);
    await startWorker(first, { ...FAST, service: 'echo', handler: echo, curve: curveOf(alice) });
    await startWorker(second, { ...FAST, service: 'echo', handler: echo, curve: curveOf(mallory) });
    const aliceOnFirst = startClient({ endpoints: [first.endpoint], curve: curveOf(alice) });
    const malloryOnSecond = startClient({ endpoints: [second.endpoint], curve: curveOf(mallory) });
    const aliceRefused = waitForEvent(second, 'peer-refused', (event) => event.publicKey === alice.publicKey);
    // Connected, and refused, before it has anything to send: the request must not wait out timeoutMs.
    const aliceOnSecond = startClient({ endpoints: [second.endpoint], curve: curveOf(alice), attemptsMax: 2, timeoutMs: 10_000 });
    await aliceRefused;
    expect(text(await aliceOnFirst.request('echo', [b('1')]))).toEqual(['1']);
    expect(text(await malloryOnSecond.request('echo', [b('2')]))).toEqual(['2']);
    await expect(aliceOnSecond.request('echo', [b('3')])).rejects.toBeInstanceOf(BrokerAuthenticationError);
  });
});

describe('CURVE broker: workers', () => {
  it('never registers a worker whose key is not allowed; the worker reports it', async () => {
    const broker = await curveBroker([alice.publicKey]);
    const refused = waitForEvent(broker, 'peer-refused', (event) => event.publicKey === workerKeys.publicKey);
    const worker = track(
      new MajordomoWorker({ ...FAST, endpoint: broker.endpoint, service: 'echo', handler: echo, curve: curveOf(workerKeys) }),
    );
    const reported = waitForEvent(worker, 'handshake-failed');
    worker.start();
    expect(await reported).toMatchObject({ failure: 'refused', endpoint: broker.endpoint });
    await refused;
    const client = startClient({ endpoints: [broker.endpoint], curve: curveOf(alice) });
    expect(await client.hasService('echo')).toBe(false);
    expect(broker.stats().workers).toBe(0);
  });

  it('lets a refused worker in once a key policy function allows its key, without a restart', async () => {
    const allowed = new Set([alice.publicKey]);
    const broker = await startBroker({ ...FAST, curve: { ...server, allowedClientKeys: (key) => allowed.has(key) } });
    const worker = track(
      new MajordomoWorker({
        ...FAST,
        reconnectDelayMs: 10,
        endpoint: broker.endpoint,
        service: 'echo',
        handler: echo,
        curve: curveOf(workerKeys),
      }),
    );
    const refused = waitForEvent(worker, 'handshake-failed');
    worker.start();
    await refused;
    const registered = waitForEvent(broker, 'worker-ready');
    allowed.add(workerKeys.publicKey);
    await registered;
    const client = startClient({ endpoints: [broker.endpoint], curve: curveOf(alice) });
    expect(text(await client.request('echo', [b('late')]))).toEqual(['late']);
  });

  it('with a workerEndpoint, keeps client keys from registering workers and worker keys from sending requests', async () => {
    const broker = await startBroker({
      ...FAST,
      workerEndpoint: 'tcp://127.0.0.1:*',
      curve: { ...server, allowedClientKeys: [alice.publicKey], allowedWorkerKeys: [workerKeys.publicKey] },
    });
    expect(broker.workerEndpoint).not.toBe(broker.endpoint);
    await startWorker(broker, {
      ...FAST,
      endpoint: broker.workerEndpoint,
      service: 'echo',
      handler: echo,
      curve: curveOf(workerKeys),
    });

    // Alice's (client) key on the worker endpoint: refused by the workers' list.
    const rogue = track(
      new MajordomoWorker({ ...FAST, endpoint: broker.workerEndpoint, service: 'echo', handler: echo, curve: curveOf(alice) }),
    );
    const rogueRefused = waitForEvent(rogue, 'handshake-failed');
    rogue.start();
    expect(await rogueRefused).toMatchObject({ failure: 'refused' });

    // The worker's key on the client endpoint: refused by the clients' list.
    const workerAsClient = startClient({ endpoints: [broker.endpoint], curve: curveOf(workerKeys), attemptsMax: 1 });
    await expect(workerAsClient.request('echo', [b('x')])).rejects.toMatchObject({ failure: 'refused' });

    const client = startClient({ endpoints: [broker.endpoint], curve: curveOf(alice) });
    expect(text(await client.request('echo', [b('through')]))).toEqual(['through']);
    expect(broker.stats()).toMatchObject({ workers: 1, misdirected: 0 });
  });
});

describe('CURVE resources', () => {
  const openFiles = (): number => readdirSync('/proc/self/fd').length;

  it.skipIf(!existsSync('/proc/self/fd'))(
    'starts and stops CURVE brokers, workers and refused clients again and again without leaking sockets or files',
    async () => {
      const cycle = async (): Promise<void> => {
        const broker = await curveBroker();
        const worker = await startWorker(broker, { ...FAST, service: 'echo', handler: echo, curve: curveOf(workerKeys) });
        const client = new MajordomoClient({ endpoints: [broker.endpoint], curve: curveOf(alice) });
        const stranger = new MajordomoClient({ endpoints: [broker.endpoint], curve: curveOf(mallory), attemptsMax: 1 });
        expect(text(await client.request('echo', [b('x')]))).toEqual(['x']);
        await expect(stranger.request('echo', [b('x')])).rejects.toBeInstanceOf(BrokerAuthenticationError);
        await stranger.close();
        await client.close();
        await worker.close();
        await broker.close();
      };
      for (let warmUp = 0; warmUp < 3; warmUp += 1) await cycle();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const before = openFiles();
      for (let round = 0; round < 30; round += 1) await cycle();
      await new Promise((resolve) => setTimeout(resolve, 100));
      // A leak costs at least one descriptor per cycle (a ZeroMQ context five): 30 cycles would show.
      expect(openFiles() - before).toBeLessThan(10);
    },
  );
});

describe('separate worker endpoint (no CURVE)', () => {
  it('answers a worker READY on the client endpoint with DISCONNECT and drops requests on the worker endpoint', async () => {
    const broker = await startBroker({ ...FAST, workerEndpoint: 'tcp://127.0.0.1:0' });
    const misplacedWorker = rawDealer(broker.endpoint);
    const refused = waitForEvent(broker, 'worker-refused');
    await misplacedWorker.send(workerReadyFrames('echo'));
    expect((await refused).service).toBe('echo');
    const disconnect = await receiveWithin(misplacedWorker);
    expect(disconnect[2]).toEqual(Buffer.from([0x05]));

    const misplacedClient = startClient({ endpoints: [broker.workerEndpoint], timeoutMs: 150, attemptsMax: 1 });
    await expect(misplacedClient.request('echo', [b('x')])).rejects.toBeInstanceOf(BrokerTimeoutError);
    expect(broker.stats()).toMatchObject({ misdirected: 2, workers: 0 });

    await startWorker(broker, { ...FAST, endpoint: broker.workerEndpoint, service: 'echo', handler: echo });
    const client = startClient({ endpoints: [broker.endpoint] });
    expect(text(await client.request('echo', [b('ok')]))).toEqual(['ok']);
  });

  it('refuses a workerEndpoint equal to endpoint', () => {
    expect(() => new MajordomoBroker({ endpoint: 'tcp://127.0.0.1:5555', workerEndpoint: 'tcp://127.0.0.1:5555' })).toThrow(
      /workerEndpoint must differ/,
    );
  });
});
