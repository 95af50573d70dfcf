import { afterEach, beforeEach } from 'vitest';

/**
 * A test fails if it writes to the console without saying so (console-fail-test):
 * stray output hides real warnings. A test that expects output replaces the method
 * with `vi.spyOn(console, 'warn').mockImplementation(...)` first.
 */
const methods = ['log', 'info', 'warn', 'error', 'debug'] as const;
type Method = (typeof methods)[number];
const originals = new Map<Method, (...args: unknown[]) => void>();
let written: string[] = [];

beforeEach(() => {
  written = [];
  for (const method of methods) {
    const original = console[method];
    originals.set(method, original);
    console[method] = (...args: unknown[]) => {
      written.push(`console.${method}: ${args.map(String).join(' ')}`);
      original.apply(console, args);
    };
  }
});

afterEach(() => {
  for (const [method, original] of originals) console[method] = original;
  if (written.length > 0) {
    const lines = written.slice(0, 5).join('\n');
    written = [];
    throw new Error(`test wrote to the console unexpectedly:\n${lines}`);
  }
});
