import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { runQuickstart } from './quickstart.js';

let dataDirectory: string;
beforeEach(async () => {
  dataDirectory = await mkdtemp(join(tmpdir(), 'sluice-quickstart-'));
});
afterEach(async () => {
  await rm(dataDirectory, { recursive: true, force: true });
});

it('appends, reads back, and continues the log on a second run', async () => {
  const lines: string[] = [];
  const first = await runQuickstart({ dataDirectory, events: 1000, streams: 10, print: (l) => lines.push(l) });
  expect(first).toEqual({ firstSeq: 1, lastSeq: 1000, appendedEvents: 1000, streamEventsRead: 150, tailEventsRead: 1000 });
  const second = await runQuickstart({ dataDirectory, events: 1000, streams: 10, print: (l) => lines.push(l) });
  expect(second).toMatchObject({ firstSeq: 1001, lastSeq: 2000, streamEventsRead: 300, tailEventsRead: 1000 });
  expect(lines.some((l) => /: 1000 events in 10 streams already/.test(l))).toBe(true);
  expect(lines.filter((l) => /events\/s/.test(l)).length).toBeGreaterThanOrEqual(6);
});
