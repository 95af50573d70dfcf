import { createMemoryStorage, openPartition, type RecordedEvent } from '@sluice/store';
import { describe, expect, it } from 'vitest';
import { eventToJson, eventToText } from './event-format.js';

const te = new TextEncoder();

/** Two commits written under the level "critical" (two events, then one), read back from the log. */
async function recorded(): Promise<RecordedEvent[]> {
  const p = await openPartition({ storage: createMemoryStorage(), level: 'critical' });
  await p.append({ streamId: 'acct', commandId: 'c1', events: [{ type: 'Opened', data: te.encode('{"a":1}') }, { type: 'Named', data: te.encode('"x"') }] });
  await p.append({ streamId: 'acct', events: [{ type: 'Closed', data: te.encode('{}') }] });
  const out: RecordedEvent[] = [];
  for await (const e of p.read()) out.push(e);
  await p.close();
  return out;
}

describe('sluice read shows the level each commit recorded', () => {
  it('as `level` in JSON lines and `level=<name>` in text, on the first event of each commit', async () => {
    const [first, second, third] = await recorded();
    expect(eventToJson(first)).toMatchObject({ seq: 1, commandIds: ['c1'], level: 'critical' });
    expect(eventToJson(second)).not.toHaveProperty('level');
    expect(eventToJson(third)).toMatchObject({ seq: 3, level: 'critical' });
    expect(eventToJson(third)).not.toHaveProperty('commandIds');
    expect(eventToText(first)).toBe('#1 acct@1 Opened {"a":1} level=critical');
    expect(eventToText(second)).toBe('#2 acct@2 Named "x"');
  });
});
