import { createMemoryStorage, openPartition, type Partition } from '@sluice/store';
import { createMemoryCheckpointStore, createMemoryParkingLot, createStreamParkingLot, redriveParked, startSagaHost } from '@sluice/subscriptions';
import { afterEach, describe, expect, it } from 'vitest';
import {
  REJECTED_STREAM,
  SNAPSHOT_EVENT,
  commandIdsOf,
  createHandlerHost,
  createInProcessRouter,
  hashPartitioner,
  isHandlerError,
  routeOutbox,
  snapshotStreamId,
  startOutboxDispatcher,
  type HandlerHost,
  type OutboxMessage,
} from './index.js';
import { account, counter, welcome, type AccountState } from './test-domain.fixture.js';

const open: Partition[] = [];
async function partition(name = 'p0'): Promise<Partition> {
  const p = await openPartition({ storage: createMemoryStorage(), name });
  open.push(p);
  return p;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((p) => p.close()));
});

const cmd = (id: string, recipient: string, command: { type: string; [k: string]: unknown }) => ({ id, commands: [{ recipient, command }] });

async function balanceOf(host: HandlerHost, p: Partition, id: string): Promise<number> {
  let balance = 0;
  for await (const e of p.readStream(id)) {
    const data = JSON.parse(new TextDecoder().decode(e.payload)) as { type: string; amount?: number };
    if (data.type === 'Deposited') balance += data.amount!;
    if (data.type === 'Withdrawn') balance -= data.amount!;
  }
  void host;
  return balance;
}

describe('HandlerHost: exactly one effect per command id', () => {
  it('a command delivered twice, in sequence and concurrently, is applied once; the duplicate gets the original outcome', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    expect((await host.execute(cmd('open-a', 'account-a', { type: 'Open' }))).status).toBe('accepted');
    const first = await host.execute(cmd('dep-1', 'account-a', { type: 'Deposit', amount: 10 }));
    const again = await host.execute(cmd('dep-1', 'account-a', { type: 'Deposit', amount: 10 }));
    expect(first).toMatchObject({ status: 'accepted', duplicate: false });
    expect(again).toMatchObject({ status: 'accepted', duplicate: true, firstSeq: first.firstSeq });
    const burst = await Promise.all(Array.from({ length: 20 }, () => host.execute(cmd('dep-2', 'account-a', { type: 'Deposit', amount: 5 }))));
    expect(burst.filter((o) => !o.duplicate)).toHaveLength(1);
    // Even from a fresh host (cache empty, as after a restart) the redelivery is a duplicate.
    const fresh = createHandlerHost({ partition: p, entities: [account] });
    expect(await fresh.execute(cmd('dep-1', 'account-a', { type: 'Deposit', amount: 10 }))).toMatchObject({ duplicate: true });
    expect(await balanceOf(host, p, 'account-a')).toBe(15);
    expect(p.streamVersion('account-a')).toBe(3);
  });

  it('a message of several commands is one unit of work: all succeed or none is applied', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    await host.execute({ id: 'open', commands: [{ recipient: 'account-a', command: { type: 'Open' } }, { recipient: 'account-b', command: { type: 'Open' } }] });
    await host.execute(cmd('fund', 'account-a', { type: 'Deposit', amount: 100 }));
    const move = (id: string, amount: number) => ({
      id,
      commands: [
        { recipient: 'account-a', command: { type: 'Withdraw', amount } },
        { recipient: 'account-b', command: { type: 'Deposit', amount } },
      ],
    });
    expect(await host.execute(move('m1', 60))).toMatchObject({ status: 'accepted' });
    const refused = await host.execute(move('m2', 60));
    expect(refused).toMatchObject({ status: 'rejected', reason: 'insufficient funds: balance 40, asked 60' });
    expect(await balanceOf(host, p, 'account-a')).toBe(40);
    expect(await balanceOf(host, p, 'account-b')).toBe(60);
    // Both command ids of m1 were committed with it, in one commit.
    const frames = [];
    for await (const f of p.read({ fromSeq: 4 })) frames.push(f);
    expect(frames[0].headers?.commandIds).toEqual(['m1/0', 'm1/1']);
    expect(frames.filter((f) => f.streamId.startsWith('account-'))).toHaveLength(2);
  });

  it('message ids holding "/" or "%" never share a command id with another message (message "a/0" is not message "a"\'s first command)', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    await host.execute({ id: 'open', commands: [{ recipient: 'account-a', command: { type: 'Open' } }, { recipient: 'account-b', command: { type: 'Open' } }] });
    const two = await host.execute({ id: 'a', commands: [{ recipient: 'account-a', command: { type: 'Deposit', amount: 1 } }, { recipient: 'account-b', command: { type: 'Deposit', amount: 1 } }] });
    // Each of these is a new message: unescaped, 'a/0' was a duplicate of 'a' and 'a%2F0' equalled the escape of 'a/0'.
    const outcomes = [];
    for (const id of ['a/0', 'a%2F0', 'a/0/1', 'a%252F0']) outcomes.push(await host.execute(cmd(id, 'account-a', { type: 'Deposit', amount: 10 })));
    expect(two).toMatchObject({ status: 'accepted', duplicate: false });
    expect(outcomes.map((o) => o.duplicate)).toEqual([false, false, false, false]);
    expect(await balanceOf(host, p, 'account-a')).toBe(41);
    // A redelivery of each is still recognized.
    expect(await host.execute(cmd('a/0', 'account-a', { type: 'Deposit', amount: 10 }))).toMatchObject({ duplicate: true, firstSeq: outcomes[0].firstSeq });
    expect(await host.execute(cmd('a%2F0', 'account-a', { type: 'Deposit', amount: 10 }))).toMatchObject({ duplicate: true, firstSeq: outcomes[1].firstSeq });
    expect(await balanceOf(host, p, 'account-a')).toBe(41);
    expect(commandIdsOf({ id: 'a/0', commands: [{ recipient: 'x', command: { type: 'T' } }] })).toEqual(['a%2F0']);
    expect(commandIdsOf({ id: 'a%/b', commands: [{ recipient: 'x', command: { type: 'T' } }, { recipient: 'y', command: { type: 'T' } }] })).toEqual(['a%25%2Fb/0', 'a%25%2Fb/1']);
    // Ids without "/" or "%" are their own escape: logs written before read back the same.
    expect(commandIdsOf({ id: 'bank-0:17:transfers', commands: [{ recipient: 'x', command: { type: 'T' } }] })).toEqual(['bank-0:17:transfers']);
  });
});

describe('HandlerHost: pipelined commands on one entity', () => {
  it('commands decided on a pending state that turns out a duplicate are decided again on the real state', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    await host.execute(cmd('open', 'account-a', { type: 'Open' }));
    await host.execute(cmd('dep-big', 'account-a', { type: 'Deposit', amount: 100 }));
    await host.execute(cmd('w-early', 'account-a', { type: 'Withdraw', amount: 100 }));
    // Redelivered deposit (a duplicate: nothing applies) with two withdrawals queued behind it in the same tick.
    const [dup, wLate, wLate2, wEarlyAgain] = await Promise.all([
      host.execute(cmd('dep-big', 'account-a', { type: 'Deposit', amount: 100 })),
      host.execute(cmd('w-late', 'account-a', { type: 'Withdraw', amount: 50 })),
      host.execute(cmd('w-late2', 'account-a', { type: 'Withdraw', amount: 150 })),
      host.execute(cmd('w-early', 'account-a', { type: 'Withdraw', amount: 100 })),
    ]);
    expect(dup).toMatchObject({ status: 'accepted', duplicate: true });
    expect(wLate).toMatchObject({ status: 'rejected', reason: 'insufficient funds: balance 0, asked 50' });
    expect(wLate2).toMatchObject({ status: 'rejected', reason: 'insufficient funds: balance 0, asked 150' });
    expect(wEarlyAgain).toMatchObject({ status: 'accepted', duplicate: true });
    expect(await balanceOf(host, p, 'account-a')).toBe(0);
    // Many commands on one entity in one tick are written in as few commits as the engine groups them.
    const burst = await Promise.all(Array.from({ length: 200 }, (_, i) => host.execute(cmd(`b-${i}`, 'account-a', { type: 'Deposit', amount: 1 }))));
    expect(burst.every((o) => o.status === 'accepted' && !o.duplicate)).toBe(true);
    expect(await balanceOf(host, p, 'account-a')).toBe(200);
  });
});

describe('HandlerHost: messages decided in one turn share a commit', () => {
  it('each message keeps its command ids: redelivered alone, together, or mixed with new messages, each applies once', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    await Promise.all(Array.from({ length: 20 }, (_, i) => host.execute(cmd(`open-${i}`, `account-${i}`, { type: 'Open' }))));
    const deposits = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => cmd(`dep-${from + k}`, `account-${(from + k) % 20}`, { type: 'Deposit', amount: 1 }));
    const first = await Promise.all(deposits(0, 40).map((m) => host.execute(m)));
    // One commit for the 40 messages (two per account: a stream's events stay contiguous in it).
    expect(new Set(first.map((o) => o.firstSeq)).size).toBe(1);
    expect(first[0].lastSeq - first[0].firstSeq + 1).toBe(40);
    expect(first.every((o) => o.status === 'accepted' && !o.duplicate)).toBe(true);
    // Every message of the commit redelivered together: one duplicate commit, the original outcome for each.
    const again = await Promise.all(deposits(0, 40).map((m) => host.execute(m)));
    expect(again.every((o) => o.status === 'accepted' && o.duplicate && o.firstSeq === first[0].firstSeq)).toBe(true);
    // Some redelivered, mixed with new ones in one turn: the engine refuses the merged commit, each message goes alone.
    const mixed = await Promise.all([...deposits(30, 40), ...deposits(40, 60)].map((m) => host.execute(m)));
    expect(mixed.slice(0, 10).every((o) => o.duplicate)).toBe(true);
    expect(mixed.slice(10).every((o) => o.status === 'accepted' && !o.duplicate)).toBe(true);
    // The same message twice in one turn: the second does not join the first's commit, and applies nothing.
    const [a, b] = await Promise.all([host.execute(cmd('dep-x', 'account-0', { type: 'Deposit', amount: 5 })), host.execute(cmd('dep-x', 'account-0', { type: 'Deposit', amount: 5 }))]);
    expect([a.duplicate, b.duplicate]).toEqual([false, true]);
    for (let i = 0; i < 20; i++) expect(await balanceOf(host, p, `account-${i}`)).toBe(3 + (i === 0 ? 5 : 0));
    // A fresh host (empty cache) agrees with the log.
    const fresh = createHandlerHost({ partition: p, entities: [account] });
    const withdrawal = await fresh.execute(cmd('w-all', 'account-0', { type: 'Withdraw', amount: 9 }));
    expect(withdrawal).toMatchObject({ status: 'rejected', reason: 'insufficient funds: balance 8, asked 9' });
  });

  it('a merged commit crossing a snapshot boundary writes the snapshot at the right seq (it is used, not ignored)', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    await host.execute(cmd('open-s', 'account-s', { type: 'Open' }));
    await host.execute(cmd('open-t', 'account-t', { type: 'Open' }));
    // 1 + 14 events on account-s and 13 on account-t in one commit: both cross version 10.
    await Promise.all(Array.from({ length: 27 }, (_, i) => host.execute(cmd(`d-${i}`, i % 2 === 0 ? 'account-s' : 'account-t', { type: 'Deposit', amount: 1 }))));
    await host.close();
    expect(host.stats.snapshotsWritten).toBe(2);
    const warnings: string[] = [];
    const checked = createHandlerHost({ partition: p, entities: [account], onWarning: (w) => warnings.push(w) });
    await checked.execute(cmd('w-s', 'account-s', { type: 'Withdraw', amount: 14 }));
    await checked.execute(cmd('w-t', 'account-t', { type: 'Withdraw', amount: 13 }));
    expect(warnings).toEqual([]);
    expect(checked.stats).toMatchObject({ snapshotsUsed: 2, snapshotsIgnored: 0, accepted: 2 });
  });

  it('a message whose event cannot be serialized commits nothing, and the messages sharing its turn still commit', async () => {
    const p = await partition();
    const picky = {
      encode: (value: unknown) => {
        if ((value as { amount?: number }).amount === 13) throw new TypeError('13 cannot be written');
        return new TextEncoder().encode(JSON.stringify(value));
      },
      decode: (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes)) as unknown,
    };
    const host = createHandlerHost({ partition: p, entities: [account], serializer: picky });
    await Promise.all(['a', 'b', 'c'].map((x) => host.execute(cmd(`open-${x}`, `account-${x}`, { type: 'Open' }))));
    const bad = { id: 'bad', commands: [{ recipient: 'account-a', command: { type: 'Deposit', amount: 1 } }, { recipient: 'account-b', command: { type: 'Deposit', amount: 13 } }] };
    const [before, failed, after] = await Promise.allSettled([host.execute(cmd('c1', 'account-c', { type: 'Deposit', amount: 1 })), host.execute(bad), host.execute(cmd('c2', 'account-c', { type: 'Deposit', amount: 2 }))]);
    expect(before).toMatchObject({ status: 'fulfilled', value: { status: 'accepted' } });
    expect(failed).toMatchObject({ status: 'rejected', reason: { message: '13 cannot be written' } });
    expect(after).toMatchObject({ status: 'fulfilled', value: { status: 'accepted' } });
    expect([await balanceOf(host, p, 'account-a'), await balanceOf(host, p, 'account-b'), await balanceOf(host, p, 'account-c')]).toEqual([0, 0, 3]);
    // The cache holds no trace of it either.
    expect(await host.execute(cmd('w-a', 'account-a', { type: 'Withdraw', amount: 1 }))).toMatchObject({ status: 'rejected', reason: 'insufficient funds: balance 0, asked 1' });
  });

  it('a shared commit is closed once it holds mergeEventsMax events, each message whole in one commit', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account], mergeEventsMax: 3 });
    await Promise.all(Array.from({ length: 8 }, (_, i) => host.execute(cmd(`open-${i}`, `account-${i}`, { type: 'Open' }))));
    const pairs = Array.from({ length: 4 }, (_, i) => ({
      id: `pair-${i}`,
      commands: [
        { recipient: `account-${2 * i}`, command: { type: 'Deposit', amount: 1 } },
        { recipient: `account-${2 * i + 1}`, command: { type: 'Deposit', amount: 1 } },
      ],
    }));
    const outcomes = await Promise.all(pairs.map((m) => host.execute(m)));
    // Two messages (4 events) per commit: the second one fills it, the third starts a new one.
    expect(outcomes.map((o) => o.lastSeq - o.firstSeq + 1)).toEqual([4, 4, 4, 4]);
    expect(new Set(outcomes.map((o) => o.firstSeq)).size).toBe(2);
    for (let i = 0; i < 4; i++) {
      for (const id of [`account-${2 * i}`, `account-${2 * i + 1}`]) {
        const seqs: number[] = [];
        for await (const e of p.readStream(id)) if (e.streamVersion === 2) seqs.push(e.seq);
        expect(seqs[0]).toBeGreaterThanOrEqual(outcomes[i].firstSeq);
        expect(seqs[0]).toBeLessThanOrEqual(outcomes[i].lastSeq);
      }
    }
  });

  it('messages for the same stream in one turn share one commit, its events in one change', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    await Promise.all(['a', 'b'].map((x) => host.execute(cmd(`open-${x}`, `account-${x}`, { type: 'Open' }))));
    const outcomes = await Promise.all(Array.from({ length: 6 }, (_, i) => host.execute(cmd(`d-${i}`, i % 2 === 0 ? 'account-a' : 'account-b', { type: 'Deposit', amount: 1 }))));
    expect(new Set(outcomes.map((o) => o.firstSeq)).size).toBe(1);
    expect(host.stats.retries).toBe(0);
    const order: string[] = [];
    for await (const e of p.read({ fromSeq: outcomes[0].firstSeq, toSeq: outcomes[0].lastSeq })) order.push(`${e.streamId}@${e.streamVersion}`);
    expect(order).toEqual(['account-a@2', 'account-a@3', 'account-a@4', 'account-b@2', 'account-b@3', 'account-b@4']);
  });

  it('a message with many recipients, some addressed twice, applies every command (past the linear look-up of its entities)', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    await Promise.all(Array.from({ length: 18 }, (_, i) => host.execute(cmd(`open-${i}`, `account-${i}`, { type: 'Open' }))));
    const commands = Array.from({ length: 18 }, (_, i) => ({ recipient: `account-${i}`, command: { type: 'Deposit', amount: 1 } }));
    commands.push({ recipient: 'account-17', command: { type: 'Deposit', amount: 2 } }, { recipient: 'account-0', command: { type: 'Deposit', amount: 3 } });
    expect(await host.execute({ id: 'many', commands })).toMatchObject({ status: 'accepted' });
    expect([await balanceOf(host, p, 'account-0'), await balanceOf(host, p, 'account-1'), await balanceOf(host, p, 'account-17')]).toEqual([4, 1, 3]);
    // The host's own states agree with the log.
    expect(await host.execute(cmd('w-0', 'account-0', { type: 'Withdraw', amount: 5 }))).toMatchObject({ status: 'rejected', reason: 'insufficient funds: balance 4, asked 5' });
    expect(await host.execute(cmd('w-17', 'account-17', { type: 'Withdraw', amount: 3 }))).toMatchObject({ status: 'accepted' });
  });

  it('the snapshots a merged commit asks for are written in one unit of work, each at the right seq', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    const ids = ['account-x', 'account-y', 'account-z'];
    await Promise.all(ids.map((id) => host.execute(cmd(`open-${id}`, id, { type: 'Open' }))));
    // 10 deposits each in one turn: every stream crosses version 10 in the same commit.
    await Promise.all(Array.from({ length: 30 }, (_, i) => host.execute(cmd(`d-${i}`, ids[i % 3], { type: 'Deposit', amount: 1 }))));
    await host.close();
    expect(host.stats.snapshotsWritten).toBe(3);
    const frames: Array<[string, boolean, boolean]> = [];
    for await (const e of p.read({})) if (e.eventType === SNAPSHOT_EVENT) frames.push([e.streamId, e.commitFirst, e.commitLast]);
    expect(frames).toEqual([
      [snapshotStreamId('account-x'), true, false],
      [snapshotStreamId('account-y'), false, false],
      [snapshotStreamId('account-z'), false, true],
    ]);
    const warnings: string[] = [];
    const checked = createHandlerHost({ partition: p, entities: [account], onWarning: (w) => warnings.push(w) });
    for (const id of ids) expect(await checked.execute(cmd(`w-${id}`, id, { type: 'Withdraw', amount: 10 }))).toMatchObject({ status: 'accepted' });
    expect(warnings).toEqual([]);
    expect(checked.stats).toMatchObject({ snapshotsUsed: 3, snapshotsIgnored: 0 });
  });

  it('mergeMessagesMax 1 commits each message on its own; different causation ids never share a commit', async () => {
    const p = await partition();
    const single = createHandlerHost({ partition: p, entities: [account], mergeMessagesMax: 1 });
    await Promise.all(Array.from({ length: 5 }, (_, i) => single.execute(cmd(`open-${i}`, `account-${i}`, { type: 'Open' }))));
    const each = await Promise.all(Array.from({ length: 5 }, (_, i) => single.execute(cmd(`d-${i}`, `account-${i}`, { type: 'Deposit', amount: 1 }))));
    expect(new Set(each.map((o) => o.firstSeq)).size).toBe(5);
    const host = createHandlerHost({ partition: p, entities: [account] });
    const caused = await Promise.all(Array.from({ length: 5 }, (_, i) => host.execute({ ...cmd(`c-${i}`, `account-${i}`, { type: 'Deposit', amount: 1 }), causationId: `cause-${i}` })));
    expect(new Set(caused.map((o) => o.firstSeq)).size).toBe(5);
    const heads = new Map<number, string | undefined>();
    for await (const e of p.read({ fromSeq: caused[0].firstSeq })) if (e.headers !== undefined) heads.set(e.seq, e.headers.causationId);
    expect([...heads.values()]).toEqual(['cause-0', 'cause-1', 'cause-2', 'cause-3', 'cause-4']);
    expect(() => createHandlerHost({ partition: p, entities: [account], mergeMessagesMax: 0 })).toThrow(/mergeMessagesMax must be a positive integer/);
  });
});

describe('HandlerHost: tracingIn event', () => {
  const decodeMetadata = (bytes: Uint8Array) => (bytes.length === 0 ? undefined : (JSON.parse(new TextDecoder().decode(bytes)) as unknown));

  it('messages with different causation ids share one commit, each event carrying its message ids as metadata', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account], tracingIn: 'event' });
    await Promise.all(Array.from({ length: 6 }, (_, i) => host.execute(cmd(`open-${i}`, `account-${i}`, { type: 'Open' }))));
    const messages = [
      ...Array.from({ length: 4 }, (_, i) => ({ ...cmd(`c-${i}`, `account-${i}`, { type: 'Deposit', amount: 1 }), causationId: `cause-${i}` })),
      cmd('plain', 'account-4', { type: 'Deposit', amount: 1 }),
      { ...cmd('both', 'account-5', { type: 'Deposit', amount: 1 }), correlationId: 'corr-5', causationId: 'cause-5' },
    ];
    const outcomes = await Promise.all(messages.map((m) => host.execute(m)));
    expect(new Set(outcomes.map((o) => o.firstSeq)).size).toBe(1);
    const seen = new Map<string, unknown>();
    for await (const e of p.read({ fromSeq: outcomes[0].firstSeq, toSeq: outcomes[0].lastSeq })) {
      if (e.headers !== undefined) expect([e.headers.causationId, e.headers.correlationId, e.headers.commandIds]).toEqual([undefined, undefined, messages.map((m) => m.id)]);
      seen.set(e.streamId, decodeMetadata(e.metadata));
    }
    expect(Object.fromEntries(seen)).toEqual({
      'account-0': { causationId: 'cause-0' },
      'account-1': { causationId: 'cause-1' },
      'account-2': { causationId: 'cause-2' },
      'account-3': { causationId: 'cause-3' },
      'account-4': undefined,
      'account-5': { correlationId: 'corr-5', causationId: 'cause-5' },
    });
    // A redelivery of the whole turn is recognized message by message.
    const again = await Promise.all(messages.map((m) => host.execute(m)));
    expect(again.map((o) => [o.status, o.duplicate])).toEqual(messages.map(() => ['accepted', true]));
    expect(await balanceOf(host, p, 'account-0')).toBe(1);
  });

  it('messages that share their ids keep them in the commit headers, without metadata', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account], tracingIn: 'event' });
    await Promise.all(Array.from({ length: 3 }, (_, i) => host.execute(cmd(`open-${i}`, `account-${i}`, { type: 'Open' }))));
    const outcomes = await Promise.all(Array.from({ length: 3 }, (_, i) => host.execute({ ...cmd(`d-${i}`, `account-${i}`, { type: 'Deposit', amount: 1 }), causationId: 'same' })));
    expect(new Set(outcomes.map((o) => o.firstSeq)).size).toBe(1);
    for await (const e of p.read({ fromSeq: outcomes[0].firstSeq, toSeq: outcomes[0].lastSeq })) {
      if (e.headers !== undefined) expect(e.headers.causationId).toBe('same');
      expect(e.metadata.length).toBe(0);
    }
    expect(() => createHandlerHost({ partition: p, entities: [account], tracingIn: 'frame' as 'event' })).toThrow(/tracingIn must be 'commit' or 'event'/);
  });
});

describe('HandlerHost: rejections are remembered', () => {
  it('a rejected command is committed with its reason; a redelivery gets the same answer even after the state changed', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    await host.execute(cmd('open', 'account-a', { type: 'Open' }));
    const rejected = await host.execute(cmd('w1', 'account-a', { type: 'Withdraw', amount: 50 }));
    expect(rejected).toMatchObject({ status: 'rejected', reason: 'insufficient funds: balance 0, asked 50', duplicate: false });
    await host.execute(cmd('fund', 'account-a', { type: 'Deposit', amount: 100 }));
    const redelivered = await host.execute(cmd('w1', 'account-a', { type: 'Withdraw', amount: 50 }));
    expect(redelivered).toMatchObject({ status: 'rejected', reason: rejected.reason, duplicate: true });
    expect(await balanceOf(host, p, 'account-a')).toBe(100);
    expect(p.streamVersion(REJECTED_STREAM)).toBe(1);
  });

  it('refusals decided in one turn share the commit with accepted messages; a redelivery of each gets its own original outcome', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    await Promise.all(['a', 'b', 'c'].map((x) => host.execute(cmd(`open-${x}`, `account-${x}`, { type: 'Open' }))));
    await host.execute(cmd('fund-b', 'account-b', { type: 'Deposit', amount: 100 }));
    const messages = [
      cmd('w-a', 'account-a', { type: 'Withdraw', amount: 5 }), // refused: balance 0
      cmd('w-b', 'account-b', { type: 'Withdraw', amount: 5 }), // accepted
      cmd('w-c', 'account-c', { type: 'Withdraw', amount: 7 }), // refused: balance 0
      // Same id as a refused one, a different number of commands (so other command ids): accepted.
      { id: 'w-a', commands: [{ recipient: 'account-b', command: { type: 'Deposit', amount: 1 } }, { recipient: 'account-b', command: { type: 'Deposit', amount: 1 } }] },
    ];
    const first = await Promise.all(messages.map((m) => host.execute(m)));
    expect(first.map((o) => o.status)).toEqual(['rejected', 'accepted', 'rejected', 'accepted']);
    // One commit: the refusals did not commit on their own.
    expect(new Set(first.map((o) => o.firstSeq)).size).toBe(1);
    expect(p.streamVersion(REJECTED_STREAM)).toBe(2);
    // The accounts change meanwhile: a redelivery still gets the original answer, message by message.
    await host.execute(cmd('fund-a', 'account-a', { type: 'Deposit', amount: 100 }));
    const again = await Promise.all(messages.map((m) => host.execute(m)));
    expect(again.map((o) => [o.status, o.reason, o.duplicate, o.firstSeq])).toEqual(first.map((o) => [o.status, o.reason, true, o.firstSeq]));
    const fresh = createHandlerHost({ partition: p, entities: [account] });
    expect(await fresh.execute(messages[1])).toMatchObject({ status: 'accepted', duplicate: true });
    expect(await fresh.execute(messages[2])).toMatchObject({ status: 'rejected', reason: 'insufficient funds: balance 0, asked 7', duplicate: true });
    expect(p.streamVersion(REJECTED_STREAM)).toBe(2);
    expect(await balanceOf(host, p, 'account-b')).toBe(97);
  });

  it('unknown command types and handlers that throw are rejected with a clear reason, and the host keeps processing', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account] });
    await host.execute(cmd('open', 'account-a', { type: 'Open' }));
    const unknown = await host.execute(cmd('u1', 'account-a', { type: 'Teleport' }));
    expect(unknown.status).toBe('rejected');
    expect(unknown.reason).toMatch(/unknown command type "Teleport"/);
    const threw = await host.execute(cmd('x1', 'account-a', { type: 'Explode' }));
    expect(threw).toMatchObject({ status: 'rejected', reason: 'handler "account" threw on Explode: Error: boom' });
    expect(await host.execute(cmd('d1', 'account-a', { type: 'Deposit', amount: 1 }))).toMatchObject({ status: 'accepted' });
    // With onHandlerError 'throw', nothing is committed and the caller sees the error.
    const strict = createHandlerHost({ partition: p, entities: [account], onHandlerError: 'throw' });
    await expect(strict.execute(cmd('x2', 'account-a', { type: 'Explode' }))).rejects.toThrow('boom');
    expect(p.streamVersion(REJECTED_STREAM)).toBe(2);
    // Malformed messages are refused before anything is committed.
    await expect(host.execute({ id: '', commands: [] })).rejects.toSatisfy((e) => isHandlerError(e, 'INVALID_MESSAGE'));
    await expect(host.execute(cmd('r1', '$checkpoint-x', { type: 'Open' }))).rejects.toThrow(/reserved/);
  });
});

describe('HandlerHost: loading and snapshots', () => {
  it('writes a snapshot every N events and loads from it; a snapshot that disagrees with the stream is ignored', async () => {
    const p = await partition();
    const warnings: string[] = [];
    const host = createHandlerHost({ partition: p, entities: [account], onWarning: (w) => warnings.push(w) });
    await host.execute(cmd('open', 'account-a', { type: 'Open' }));
    for (let i = 0; i < 24; i++) await host.execute(cmd(`d${i}`, 'account-a', { type: 'Deposit', amount: 1 }));
    await host.close();
    expect(host.stats.snapshotsWritten).toBe(2); // at versions 10 and 20
    const reloaded = createHandlerHost({ partition: p, entities: [account] });
    await reloaded.execute(cmd('d-next', 'account-a', { type: 'Deposit', amount: 1 }));
    expect(reloaded.stats.snapshotsUsed).toBe(1);
    // A snapshot claiming a seq the stream does not have at its version: never trusted.
    await p.append({
      streamId: snapshotStreamId('account-a'),
      events: [{ type: '$Snapshot', data: new TextEncoder().encode(JSON.stringify({ version: 26, seq: 1, state: { open: true, balance: 1_000_000 } })) }],
    });
    const wary = createHandlerHost({ partition: p, entities: [account], onWarning: (w) => warnings.push(w), cacheEntitiesMax: 0 });
    const withdraw = await wary.execute(cmd('w-big', 'account-a', { type: 'Withdraw', amount: 1000 }));
    expect(withdraw).toMatchObject({ status: 'rejected', reason: 'insufficient funds: balance 25, asked 1000' });
    expect(wary.stats.snapshotsIgnored).toBe(1);
    expect(warnings.join('\n')).toMatch(/snapshot of "account-a" ignored.*seq 1, the stream says seq/);
  });

  it('the cache is bounded and evicted entities reload to the same state', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [account], cacheEntitiesMax: 5 });
    for (let i = 0; i < 20; i++) await host.execute(cmd(`open-${i}`, `account-${i}`, { type: 'Open' }));
    expect(host.cachedEntities).toBe(5);
    for (let i = 0; i < 20; i++) await host.execute(cmd(`dep-${i}`, `account-${i}`, { type: 'Deposit', amount: i }));
    for (let i = 0; i < 20; i++) {
      const o = await host.execute(cmd(`w-${i}`, `account-${i}`, { type: 'Withdraw', amount: i + 1 }));
      expect(o.reason).toBe(`insufficient funds: balance ${i}, asked ${i + 1}`);
    }
  });
});

describe('state entities, sagas, router and outbox dispatcher', () => {
  it('a state entity persists only its state and its explicit messages; the dispatcher publishes them once, with deterministic ids', async () => {
    const p = await partition();
    const host = createHandlerHost({ partition: p, entities: [counter, account] });
    for (let i = 0; i < 7; i++) await host.execute(cmd(`inc-${i}`, 'counter-1', { type: 'Increment' }));
    await host.execute(cmd('open', 'account-a', { type: 'Open' }));
    expect(p.streamVersion('counter-1')).toBe(7);
    const fresh = createHandlerHost({ partition: p, entities: [counter] });
    await fresh.execute(cmd('inc-7', 'counter-1', { type: 'Increment' }));
    const seen: OutboxMessage[] = [];
    const checkpoints = createMemoryCheckpointStore();
    const dispatcher = startOutboxDispatcher({ partition: p, checkpoints, publish: async (m) => void seen.push(...m) });
    await dispatcher.waitFor(p.lastSeq);
    await dispatcher.stop();
    expect(seen.map((m) => [m.kind, m.type, (m.data as { count?: number }).count])).toEqual([
      ['publish', 'CounterReachedMultipleOf3', 3],
      ['publish', 'CounterReachedMultipleOf3', 6],
      ['event', 'Opened', undefined],
    ]);
    expect(seen.every((m) => m.id === `p0:${m.seq}`)).toBe(true);
  });

  it('a saga entity sends commands to another partition through the router; redelivery never applies them twice', async () => {
    const names = ['bank-0', 'bank-1'];
    const partitionOf = hashPartitioner(names);
    // Find an account that lives in the other partition than the saga.
    const sagaId = 'welcome-1';
    let target = 'account-x0';
    for (let i = 0; partitionOf(target) === partitionOf(sagaId); i++) target = `account-x${i}`;
    const partitions = new Map<string, Partition>();
    for (const n of names) partitions.set(n, await partition(n));
    const hosts = new Map(names.map((n) => [n, createHandlerHost({ partition: partitions.get(n)!, entities: [account, welcome] })] as const));
    const router = createInProcessRouter({ hosts });
    expect(router.partitionOf(target)).not.toBe(router.partitionOf(sagaId));
    await expect(router.send({ id: 'x', commands: [{ recipient: sagaId, command: { type: 'Open' } }, { recipient: target, command: { type: 'Open' } }] })).rejects.toSatisfy((e) => isHandlerError(e, 'CROSS_PARTITION_MESSAGE'));
    expect(await router.send(cmd('w1', sagaId, { type: 'Welcome', account: target }))).toMatchObject({ status: 'accepted' });
    const source = partitions.get(partitionOf(sagaId))!;
    const sink = routeOutbox(router);
    const publishTwice = async (m: OutboxMessage[]) => {
      await sink(m);
      await sink(m); // a redelivered batch
    };
    const dispatcher = startOutboxDispatcher({ partition: source, checkpoints: createMemoryCheckpointStore(), publish: publishTwice });
    await dispatcher.waitFor(source.lastSeq);
    await dispatcher.stop();
    const targetPartition = partitions.get(partitionOf(target))!;
    expect(targetPartition.streamVersion(target)).toBe(1);
    // Target partition down: a clear, retryable error, never a silent drop.
    router.detach(partitionOf(target));
    await expect(router.send(cmd('later', target, { type: 'Deposit', amount: 1 }))).rejects.toSatisfy((e) => isHandlerError(e, 'PARTITION_UNAVAILABLE'));
  });
});

describe('saga host with the router', () => {
  it('replaying a saga from an old checkpoint sends the same command ids again: the target partitions apply each once', async () => {
    const names = ['p-a', 'p-b'];
    const partitions = new Map<string, Partition>();
    for (const n of names) partitions.set(n, await partition(n));
    const hosts = new Map(names.map((n) => [n, createHandlerHost({ partition: partitions.get(n)!, entities: [account] })] as const));
    const router = createInProcessRouter({ hosts });
    for (let i = 0; i < 20; i++) await router.send(cmd(`open-${i}`, `account-${i}`, { type: 'Open' }));
    const source = partitions.get('p-a')!;
    // Every deposit in p-a is mirrored as a deposit to the "next" account, wherever it lives.
    const saga = {
      name: 'mirror',
      filter: { eventTypes: ['Deposited'] },
      handle: (e: { streamId: string; data: unknown }) => {
        const n = Number(e.streamId.split('-')[1]);
        // Mirrors only original deposits (1000), not its own (1): no chain reaction.
        if ((e.data as { amount: number }).amount !== 1000) return [];
        return [{ recipient: `account-${(n + 1) % 20}`, command: { type: 'Deposit', amount: 1 } }];
      },
    };
    const local = [...Array(20).keys()].filter((i) => router.partitionOf(`account-${i}`) === 'p-a');
    for (const i of local) await router.send(cmd(`dep-${i}`, `account-${i}`, { type: 'Deposit', amount: 1000 }));
    const checkpoints = createMemoryCheckpointStore();
    const parking = createMemoryParkingLot();
    const run = async () => {
      const host = startSagaHost({ saga, source, checkpoints, sender: router, parking });
      await host.waitFor(source.lastSeq);
      await host.stop();
    };
    await run();
    const deposited = async () => {
      let total = 0;
      for (const p of partitions.values()) for await (const e of p.read()) if (e.eventType === 'Deposited') total += 1;
      return total;
    };
    const afterFirst = await deposited();
    await checkpoints.reset('mirror', 0); // redeliver everything
    const duplicatesBefore = [...hosts.values()].reduce((n, h) => n + h.stats.duplicates, 0);
    await run();
    expect(await deposited()).toBe(afterFirst);
    expect([...hosts.values()].reduce((n, h) => n + h.stats.duplicates, 0) - duplicatesBefore).toBeGreaterThanOrEqual(local.length);
    expect(parking.parked).toEqual([]);
  });
});

describe('saga host: target partition down', () => {
  it('commands for a partition that is down are parked durably with the reason; the rest goes on; re-driving them later applies each once', async () => {
    const names = ['q-a', 'q-b'];
    const partitions = new Map<string, Partition>();
    for (const n of names) partitions.set(n, await partition(n));
    const hosts = new Map(names.map((n) => [n, createHandlerHost({ partition: partitions.get(n)!, entities: [account] })] as const));
    const router = createInProcessRouter({ hosts });
    for (let i = 0; i < 20; i++) await router.send(cmd(`open-${i}`, `account-${i}`, { type: 'Open' }));
    const source = partitions.get('q-a')!;
    const local = [...Array(20).keys()].filter((i) => router.partitionOf(`account-${i}`) === 'q-a');
    for (const i of local) await router.send(cmd(`dep-${i}`, `account-${i}`, { type: 'Deposit', amount: 1000 }));
    router.detach('q-b'); // q-b is down
    const saga = {
      name: 'mirror',
      filter: { eventTypes: ['Deposited'] },
      handle: (e: { streamId: string; data: unknown }) =>
        (e.data as { amount: number }).amount === 1000 ? [{ recipient: `account-${(Number(e.streamId.split('-')[1]) + 1) % 20}`, command: { type: 'Deposit', amount: 1 } }] : [],
    };
    const host = startSagaHost({ saga, source, checkpoints: createMemoryCheckpointStore(), sender: router, parking: createStreamParkingLot(source), sendAttemptsMax: 2, retryDelayMs: 1 });
    await host.waitFor(source.lastSeq);
    await host.stop();
    const toB = local.filter((i) => router.partitionOf(`account-${(i + 1) % 20}`) === 'q-b').length;
    expect(toB).toBeGreaterThan(0);
    expect(source.streamVersion('$parked-mirror')).toBe(toB);
    let reason = '';
    for await (const e of source.readStream('$parked-mirror', { maxCount: 1 })) reason = (JSON.parse(new TextDecoder().decode(e.payload)) as { reason: string }).reason;
    expect(reason).toMatch(/2 attempts to deliver q-a:\d+:mirror failed: PartitionUnavailableError: \[sluice\/handlers\] partition "q-b" is not available/);
    router.attach('q-b', hosts.get('q-b')!);
    const first = await redriveParked({ partition: source, subscriber: 'mirror', sender: router });
    expect(first).toEqual({ delivered: toB, failed: [], skipped: 0 });
    const again = await redriveParked({ partition: source, subscriber: 'mirror', sender: router });
    expect(again.delivered).toBe(toB);
    let mirrored = 0;
    for await (const e of partitions.get('q-b')!.read()) if (e.eventType === 'Deposited') mirrored++;
    expect(mirrored).toBe(toB); // re-driven twice, applied once
  });
});

export type { AccountState };
