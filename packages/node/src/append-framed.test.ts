import { createMemoryStorage, openPartition, type UnitOfWork } from '@sluice/store';
import {
  decodeStoreReply,
  encodeErrorReply,
  encodeFramedUnit,
  encodeStoreRequest,
  partitionServiceName,
} from '@sluice/client';
import { FAST, startBroker, startClient, startWorker } from '@sluice/majordomo/testing';
import { describe, expect, it } from 'vitest';
import { PartitionHandler } from './partition-handler.js';
import { collect, commitsOf, startStoreClient, startStoreNode, tempDir, writeConfig } from './testing/store-harness.js';

const data = (text: string): Uint8Array => new TextEncoder().encode(text);
const unit = (streamId: string, commandId: string, ...payloads: string[]): UnitOfWork => ({
  changes: [{ streamId, events: payloads.map((p) => ({ type: 'E', data: data(p) })) }],
  commandIds: [commandId],
});

describe('append-framed (op 7): one event encoding from client to disk', () => {
  it('commits framed units through broker and node; a unit whose body CRC fails gets a corrupt-frame outcome and nothing of it is stored', async () => {
    const broker = await startBroker(FAST);
    const { config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'] });
    const node = await startStoreNode([broker], { config, nodeName: 'n1', concurrency: 1 });
    const mdp = startClient({ endpoints: [broker.endpoint] });
    const ask = async (body: Buffer[]) => decodeStoreReply(await mdp.request(partitionServiceName('p1'), body));

    const good = encodeFramedUnit(unit('acct-1', 'c-1', 'a', 'b'));
    const bad = encodeFramedUnit(unit('acct-2', 'c-2', 'payload'));
    const flipped = Buffer.from(bad.frames);
    flipped[flipped.length - 6] ^= 0x10; // in the payload, under the body CRC
    const reply = await ask([encodeStoreRequest({ op: 'append-framed', partition: 'p1', units: [good, { frames: flipped }, { ...good, expectedVersion: 0 }] })]);
    expect(reply).toMatchObject({
      ok: true,
      reply: {
        kind: 'committed-many',
        outcomes: [
          { ok: true, result: { firstSeq: 1, lastSeq: 2, streams: [{ streamId: 'acct-1', version: 2 }] } },
          { ok: false, error: { code: 'corrupt-frame', event: 0, retryable: false, message: expect.stringMatching(/CRC-32C .*nothing was stored/) } },
          // The same command id again: the original result (checked before the expected version).
          { ok: true, result: { firstSeq: 1, lastSeq: 2, duplicate: true } },
        ],
      },
    });
    // A request whose framed bytes are cut short is malformed; the node keeps serving.
    const cut = encodeStoreRequest({ op: 'append-framed', partition: 'p1', units: [good] });
    expect(await ask([cut.subarray(0, cut.length - 3)])).toMatchObject({ ok: true, reply: { kind: 'error', error: { code: 'malformed-request' } } });
    expect(await ask([encodeStoreRequest({ op: 'head', partition: 'p1', streamId: 'acct-2' })])).toMatchObject({
      ok: true,
      reply: { kind: 'head', head: { lastSeq: 2, streamVersion: 0 } },
    });
    expect(node.stats().partitions.p1.errors).toEqual({ 'corrupt-frame': 1, 'malformed-request': 1 });

    // The store client maps the outcome to the store's typed error.
    const client = startStoreClient({ brokers: [broker.endpoint], routing: config.routing });
    const events = await collect(client.readStream('acct-1'));
    expect(events.map((e) => [e.seq, e.streamVersion, new TextDecoder().decode(e.payload)])).toEqual([
      [1, 1, 'a'],
      [2, 2, 'b'],
    ]);
    expect(events[0].headers?.commandIds).toEqual(['c-1']);
  });

  it('the store client sends coalesced appends framed, and the old ops (append, append-many) still work beside them', async () => {
    const broker = await startBroker(FAST);
    const { config } = await writeConfig(await tempDir(), { brokers: [broker], partitions: ['p1'] });
    await startStoreNode([broker], { config, nodeName: 'n1', concurrency: 2 });
    const framed = startStoreClient({ brokers: [broker.endpoint], routing: config.routing });
    const old = startStoreClient({ brokers: [broker.endpoint], routing: config.routing, framedAppends: false });
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? old : framed).append({ streamId: `s-${i % 20}`, commandId: `cmd-${i}`, events: [{ type: 'E', data: data(String(i)) }] })),
    );
    expect(results.map((r) => r.firstSeq).sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    // A unit of several streams cannot be framed: it goes as a plain append.
    const multi = await framed.commit({ changes: [{ streamId: 's-1', events: [{ type: 'E', data: data('m') }] }, { streamId: 's-2', events: [{ type: 'E', data: data('n') }] }] });
    expect(multi.streams.map((s) => s.streamId)).toEqual(['s-1', 's-2']);
    const { commits, problems } = commitsOf(await collect(framed.read('p1')));
    expect(problems).toEqual([]);
    expect(commits.size).toBe(301);
  });

  it('falls back to append-many when the node does not know op 7 (an older node)', async () => {
    const broker = await startBroker(FAST);
    const partition = await openPartition({ storage: createMemoryStorage(), name: 'p1' });
    const handler = new PartitionHandler(partition, { pageBytesMax: 1 << 20, pageEventsMax: 1000, subscribeWaitMsMax: 1000 }, 'old-node');
    const ops: number[] = [];
    await startWorker(broker, {
      service: partitionServiceName('p1'),
      ...FAST,
      handler: async (frames) => {
        // What a node before op 7 answers (its decoder's words).
        ops.push(frames[0][4]);
        if (frames[0][4] === 7) {
          return [encodeErrorReply({ code: 'malformed-request', partition: '', retryable: false, message: '[sluice/client] malformed store request: unknown operation 7: this node knows append (1), read (2), read-stream (3), head (4), append-many (5) and subscribe (6); send requests encoded by encodeStoreRequest' })];
        }
        return handler.handle(frames);
      },
    });
    const client = startStoreClient({ brokers: [broker.endpoint], routing: { hash: ['p1'] }, framedUnitBytesMax: 4096 });
    // A unit over framedUnitBytesMax goes as a plain append (op 1), never framed.
    await client.append({ streamId: 'big', events: [{ type: 'E', data: new Uint8Array(5000) }] });
    expect(ops).toEqual([1]);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => client.append({ streamId: `s-${i}`, events: [{ type: 'E', data: data(String(i)) }] })));
    expect(results.map((r) => r.firstSeq).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 2));
    await client.append({ streamId: 's-0', events: [{ type: 'E', data: data('later') }] });
    expect(ops.filter((op) => op === 7)).toHaveLength(1); // tried once, then remembered
    expect(ops.at(-1)).toBe(1);
    expect(partition.lastSeq).toBe(52);
    await partition.close();
  });
});
