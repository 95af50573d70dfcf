import { expect, it } from 'vitest';
import * as zmq from 'zeromq';
import { MessageTrace, formatHopBreakdown, hopBreakdown, traceSockets, type TraceEvent } from './message-trace.js';

const at = (atUs: number, process: string, what: string): TraceEvent => ({ atUs, process, what });

it('lines up the records of several processes per request and gives the median of each step', () => {
  const requests = [
    // client op-start, client send, broker recv, node recv, node send, client recv, client op-end
    [0, 10, 30, 60, 160, 200, 205],
    [1000, 1020, 1050, 1070, 1270, 1300, 1310],
    [2000, 2010, 2020, 2050, 2150, 2200, 2201],
  ];
  const events: TraceEvent[] = [at(-50, 'node', 'recv')]; // before the first request: not counted
  for (const [start, send, brokerRecv, nodeRecv, nodeSend, recv, end] of requests) {
    events.push(at(start, 'client', 'op-start'), at(send, 'client', 'send'), at(brokerRecv, 'broker', 'recv'));
    events.push(at(nodeRecv, 'node', 'recv'), at(nodeSend, 'node', 'send'), at(recv, 'client', 'recv'), at(end, 'client', 'op-end'));
  }
  // A timer in one request only: its steps are left out, the others keep theirs.
  events.push(at(1100, 'node', 'timer'));
  // The processes' records arrive one process after another, not in time order.
  const shuffled = [...events.filter((e) => e.process === 'node'), ...events.filter((e) => e.process !== 'node')];
  const steps = hopBreakdown(shuffled);
  expect(steps.map((s) => [s.step, s.medianUs])).toEqual([
    ['client op-start → client send', 10],
    ['client send → broker recv', 20],
    ['broker recv → node recv', 30],
    ['node recv → node send', 100],
    ['node send → client recv', 40],
    ['client recv → client op-end', 5],
    ['total', 205],
  ]);
  // The request with the timer still counts in the steps around it, minus the split one.
  expect(steps.find((s) => s.step === 'node recv → node send')?.count).toBe(2);
  expect(formatHopBreakdown(steps)).toMatch(/sum of the step medians\s+205 µs/);
});

it('records the sends and receives of this process\'s sockets, and stops when removed', async () => {
  const trace = new MessageTrace('client');
  const untrace = traceSockets(trace, 4);
  const router = new zmq.Router({ linger: 0 });
  const dealer = new zmq.Dealer({ linger: 0 });
  try {
    await router.bind('tcp://127.0.0.1:*');
    dealer.connect(router.lastEndpoint as string);
    await dealer.send([Buffer.from('hello')]);
    const [identity, body] = await router.receive();
    await router.send([identity, Buffer.from('world')]);
    await dealer.receive();
    expect(body.toString()).toBe('hello');
    expect(trace.take().map((e) => e.what)).toEqual(['send', 'recv', 'send', 'recv']);
    untrace();
    await dealer.send([Buffer.from('again')]);
    await router.receive();
    expect(trace.take()).toEqual([]);
  } finally {
    untrace();
    dealer.close();
    router.close();
  }
});
