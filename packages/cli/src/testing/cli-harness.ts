import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { ExitCodeValue } from '../exit-codes.js';
import type { CliIo, CliOutput } from '../io.js';
import { run } from '../run.js';

/** Test-only helpers: the CLI run in-process with collected output; temp folders removed after each test. */

const folders: string[] = [];
const running: { stop(): Promise<unknown> }[] = [];

afterEach(async () => {
  for (const cli of running.splice(0).reverse()) await cli.stop();
  for (const folder of folders.splice(0)) await rm(folder, { recursive: true, force: true });
});

/** A fresh temp folder, removed after the test. */
export async function tempFolder(): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'sluice-cli-'));
  folders.push(folder);
  return folder;
}

/** Collects what the CLI writes; `lines` grows as it writes. */
export class Collector implements CliOutput {
  text = '';
  private waiters: { count: number; resolve: () => void }[] = [];
  constructor(readonly isTTY = false, readonly columns = 100) {}

  write(chunk: string): boolean {
    this.text += chunk;
    const lines = this.lines.length;
    this.waiters = this.waiters.filter((waiter) => {
      if (lines < waiter.count) return true;
      waiter.resolve();
      return false;
    });
    return true;
  }

  /** Complete lines written so far. */
  get lines(): string[] {
    const lines = this.text.split('\n');
    lines.pop();
    return lines;
  }

  /** Resolves once `count` complete lines were written; rejects after `timeoutMs`. */
  waitForLines(count: number, timeoutMs = 10_000): Promise<string[]> {
    if (this.lines.length >= count) return Promise.resolve(this.lines);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`expected ${count} line(s) within ${timeoutMs} ms, got:\n${this.text}`)),
        timeoutMs,
      );
      this.waiters.push({
        count,
        resolve: () => {
          clearTimeout(timer);
          resolve(this.lines);
        },
      });
    });
  }
}

/** What one run produced. */
export interface CliResult {
  readonly code: ExitCodeValue;
  readonly stdout: string;
  readonly stderr: string;
  readonly lines: string[];
}

export interface RunOptions {
  /** Lines fed to stdin (each followed by "\n"); without it stdin is an empty terminal. */
  readonly stdin?: readonly string[];
  readonly stderrIsTTY?: boolean;
  readonly cwd?: string;
}

function makeIo(options: RunOptions, signal: AbortSignal): { io: CliIo; stdout: Collector; stderr: Collector } {
  const stdout = new Collector();
  const stderr = new Collector(options.stderrIsTTY ?? false);
  const lines = options.stdin;
  const stdin = Object.assign(
    (async function* () {
      for (const line of lines ?? []) yield Buffer.from(`${line}\n`);
    })(),
    { isTTY: lines === undefined },
  );
  return { io: { stdout, stderr, stdin, signal, cwd: options.cwd }, stdout, stderr };
}

/** Runs one command to its end. */
export async function sluice(argv: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  const { io, stdout, stderr } = makeIo(options, new AbortController().signal);
  const code = await run(argv, io);
  return { code, stdout: stdout.text, stderr: stderr.text, lines: stdout.lines };
}

/** A long-running command (broker, node, tail): stop it with `stop()` (as SIGTERM would). */
export interface RunningCli {
  readonly stdout: Collector;
  readonly stderr: Collector;
  readonly exit: Promise<ExitCodeValue>;
  /** Aborts the io signal and resolves with the exit code. */
  stop(): Promise<ExitCodeValue>;
}

/** Starts a command that runs until stopped; it is stopped after the test at the latest. */
export function startSluice(argv: readonly string[], options: RunOptions = {}): RunningCli {
  const controller = new AbortController();
  const { io, stdout, stderr } = makeIo(options, controller.signal);
  const exit = run(argv, io);
  const cli: RunningCli = {
    stdout,
    stderr,
    exit,
    stop: async () => {
      controller.abort();
      return exit;
    },
  };
  running.push(cli);
  return cli;
}

/** Parses JSON lines. */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
