#!/usr/bin/env node
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runQuickstart } from './quickstart.js';

const usage = `Usage: sluice-quickstart [--data DIR] [--events N] [--streams N]

Appends events to a partition on the embedded file store and reads them back.
  --data DIR      where the partition's files go (default: ./data)
  --events N      events to append this run (default: 20000)
  --streams N     streams (accounts) to spread them over (default: 100)
  --help          show this help`;

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got "${value}"`);
  return n;
}

try {
  const { values } = parseArgs({
    options: { data: { type: 'string' }, events: { type: 'string' }, streams: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help === true) {
    console.log(usage);
  } else {
    await runQuickstart({
      dataDirectory: resolve(values.data ?? 'data'),
      events: positiveInt('events', values.events, 20_000),
      streams: positiveInt('streams', values.streams, 100),
      print: (line) => console.log(line),
    });
  }
} catch (error) {
  console.error(`quickstart failed: ${error instanceof Error ? error.message : String(error)}\n\n${usage}`);
  process.exitCode = 1;
}
