import { describe, expect, it } from 'vitest';
import { clientRequestFrames } from './mdp.js';
import { rawDealer, startBroker, startWorker, text } from './testing/harness.js';

const REQUESTS = 100_000;

describe('no request is dropped silently (issue 10, item 3)', () => {
  // The ZeroMQ guide's asynchronous Majordomo client (mdclient2): a plain RFC 7 client sends
  // 100,000 requests before it reads a single reply. With default settings every one is
  // answered: the broker holds them (bounded by clientInFlightMax / requestBytesMax), its
  // reply pipe to the client is sized for them, and the client's sends are back-pressured by
  // its own high-water mark instead of anything being dropped.
  it(`answers all ${REQUESTS.toLocaleString('en')} requests of a client that sends them all before reading, with default settings`, { timeout: 240_000 }, async () => {
    const broker = await startBroker();
    await startWorker(broker, { service: 'echo', handler: async (body) => body, concurrency: 16 });
    const client = rawDealer(broker.endpoint);
    for (let i = 0; i < REQUESTS; i++) await client.send(clientRequestFrames('echo', [Buffer.from(String(i))]));
    const seen = new Uint8Array(REQUESTS);
    let replies = 0;
    // Generous: a loaded 2-core machine; every reply is an event, nothing is polled.
    client.receiveTimeout = 60_000;
    while (replies < REQUESTS) {
      const reply = await client.receive();
      expect(text(reply.slice(1, 3))).toEqual(['MDPC01', 'echo']);
      const index = Number(reply[3].toString());
      if (seen[index] !== 0) throw new Error(`duplicate ${index} after ${replies}: ${JSON.stringify(broker.stats())}`);
      seen[index] = 1;
      replies += 1;
    }
    expect(replies).toBe(REQUESTS);
    expect(broker.stats()).toMatchObject({ rejectedRequests: 0, droppedSends: 0, queuedRequests: 0 });
  });
});
