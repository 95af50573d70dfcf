import { describe, expect, it } from 'vitest';
import { decodeCorrelation } from './correlation.js';
import {
  endpointOf,
  rawRequest,
  rawRouter,
  rawWorker,
  receiveMatching,
  receiveWithin,
  startBroker,
  startClient,
  startWorker,
  text,
  track,
} from './testing/harness.js';
import { MajordomoWorker, createWorker } from './worker.js';

/**
 * Byte-for-byte interoperability with the ZeroMQ guide's reference Majordomo code (chapter 4):
 * `mdcliapi` (a REQ socket sending "MDPC01", service, body; REQ adds the empty delimiter),
 * `mdwrkapi` (a DEALER sending READY / REPLY with the client envelope) and `mdbroker`
 * (a ROUTER). Each side is played with raw sockets sending the exact frames of that code.
 */

const b = (value: string): Buffer => Buffer.from(value, 'latin1');
const E = Buffer.alloc(0);
const READY = Buffer.from([0x01]);
const REQUEST = Buffer.from([0x02]);
const REPLY = Buffer.from([0x03]);

describe('interoperability with the guide reference client and worker', () => {
  it('reference client ↔ our broker ↔ reference worker, every frame as in mdcliapi / mdwrkapi', async () => {
    const broker = await startBroker();
    // mdwrkapi: s_mdwrk_send_to_broker(MDPW_READY, service) → "", "MDPW01", 0x01, "echo".
    const worker = await rawWorker(broker, 'echo');
    // mdcliapi (REQ): pushes service then "MDPC01"; REQ adds the empty delimiter.
    const client = rawRequest(broker.endpoint);
    await client.send([b('MDPC01'), b('echo'), b('Hello world')]);

    const request = await receiveMatching(worker, (frames) => frames[2]?.equals(REQUEST) ?? false);
    expect(request).toHaveLength(6);
    expect(request[0]).toEqual(E);
    expect(request[1]).toEqual(b('MDPW01'));
    expect(request[2]).toEqual(REQUEST);
    const clientAddress = request[3];
    expect(clientAddress.length).toBeGreaterThan(0);
    expect(request[4]).toEqual(E);
    expect(request[5]).toEqual(b('Hello world'));

    // mdwrkapi: zmsg_wrap(reply, reply_to) then "MDPW01", 0x03 and the empty frame.
    await worker.send([E, b('MDPW01'), REPLY, clientAddress, E, b('Hello world')]);
    // mdcliapi asserts: at least 3 frames, "MDPC01", the service it asked for, then the body.
    const reply = await receiveWithin(client);
    expect(reply).toEqual([b('MDPC01'), b('echo'), b('Hello world')]);
  });

  it('reference client (mmiecho) asks mmi.service through a REQ socket', async () => {
    const broker = await startBroker();
    await rawWorker(broker, 'echo');
    const client = rawRequest(broker.endpoint);
    await client.send([b('MDPC01'), b('mmi.service'), b('echo')]);
    expect(await receiveWithin(client)).toEqual([b('MDPC01'), b('mmi.service'), b('200')]);
    await client.send([b('MDPC01'), b('mmi.service'), b('nobody')]);
    expect(await receiveWithin(client)).toEqual([b('MDPC01'), b('mmi.service'), b('404')]);
  });

  it('reference client ↔ our broker ↔ our MajordomoWorker', async () => {
    const broker = await startBroker();
    await startWorker(broker, { service: 'echo', handler: async (request) => request });
    const client = rawRequest(broker.endpoint);
    for (const body of ['one', 'two']) {
      await client.send([b('MDPC01'), b('echo'), b(body), b('tail')]);
      expect(await receiveWithin(client)).toEqual([b('MDPC01'), b('echo'), b(body), b('tail')]);
    }
  });

  it('our MajordomoClient (rfc7) ↔ our broker ↔ reference worker', async () => {
    const broker = await startBroker();
    const worker = await rawWorker(broker, 'echo');
    const client = startClient({ endpoints: [broker.endpoint], mode: 'rfc7' });
    const reply = client.request('echo', [b('ping')]);
    const request = await receiveMatching(worker, (frames) => frames[2]?.equals(REQUEST) ?? false);
    expect(text(request.slice(4))).toEqual(['', 'ping']); // plain body, no correlation frame
    await worker.send([E, b('MDPW01'), REPLY, request[3], E, b('pong')]);
    expect(text(await reply)).toEqual(['pong']);
  });

  it('our correlated client works with a reference worker that echoes the body', async () => {
    const broker = await startBroker();
    const worker = await rawWorker(broker, 'echo');
    const client = startClient({ endpoints: [broker.endpoint] });
    const reply = client.request('echo', [b('ping')]);
    const request = await receiveMatching(worker, (frames) => frames[2]?.equals(REQUEST) ?? false);
    expect(decodeCorrelation(request[5])).toMatchObject({ kind: 'message' });
    await worker.send([E, b('MDPW01'), REPLY, request[3], E, ...request.slice(5)]);
    expect(text(await reply)).toEqual(['ping']);
  });
});

describe('interoperability with a reference broker (mdbroker frames on a raw ROUTER)', () => {
  it('our client sends exactly "", "MDPC01", service, body and takes the reference reply', async () => {
    const router = await rawRouter();
    const client = startClient({ endpoints: [endpointOf(router)], mode: 'rfc7' });
    const reply = client.request('echo', [b('a'), b('b')]);
    const request = await receiveWithin(router);
    expect(request.slice(1)).toEqual([E, b('MDPC01'), b('echo'), b('a'), b('b')]);
    // mdbroker: s_worker_process wraps the client address, then "MDPC01" and the service.
    await router.send([request[0], E, b('MDPC01'), b('echo'), b('a'), b('b')]);
    expect(text(await reply)).toEqual(['a', 'b']);
  });

  it('our worker speaks READY / REQUEST / REPLY / HEARTBEAT as mdbroker expects', async () => {
    const router = await rawRouter();
    startWorkerAt(endpointOf(router));
    const ready = await receiveWithin(router);
    const identity = ready[0];
    expect(ready.slice(1)).toEqual([E, b('MDPW01'), READY, b('echo')]);
    // mdbroker s_worker_send(MDPW_REQUEST, NULL, msg) with msg = client address, "", body.
    await router.send([identity, E, b('MDPW01'), REQUEST, b('CLIENT-ID'), E, b('body')]);
    const reply = await receiveMatching(router, (frames) => frames[3]?.equals(REPLY) ?? false);
    expect(reply).toEqual([identity, E, b('MDPW01'), REPLY, b('CLIENT-ID'), E, b('body')]);
    const heartbeat = await receiveMatching(router, (frames) => frames[3]?.[0] === 0x04, 2000);
    expect(heartbeat).toEqual([identity, E, b('MDPW01'), Buffer.from([0x04])]);
  });
});

function startWorkerAt(endpoint: string): MajordomoWorker {
  return track(
    createWorker({
      endpoint,
      service: 'echo',
      handler: async (request) => request,
      heartbeatIntervalMs: 50,
      heartbeatLiveness: 1000,
    }),
  );
}
