/** Where the command writes: `process.stdout` / `process.stderr`, or a test's collector. */
export interface CliOutput {
  /** Returns false when the caller should wait for `drain` before writing more (streams). */
  write(chunk: string): boolean | void;
  /** Present on streams: `drain` is waited for when `write` returned false (or `close` / `error`). */
  once?(event: 'drain' | 'close' | 'error', listener: () => void): unknown;
  off?(event: 'drain' | 'close' | 'error', listener: () => void): unknown;
  /** True on a terminal: progress bars are drawn only there. */
  readonly isTTY?: boolean;
  /** Terminal width, for progress bars. */
  readonly columns?: number;
}

/**
 * Everything the command touches of its process, injected so tests run it in-process:
 * output streams, stdin, the stop signal (SIGINT / SIGTERM) and the working directory.
 */
export interface CliIo {
  readonly stdout: CliOutput;
  readonly stderr: CliOutput;
  /** Input for `sluice append` without `--data` (JSON lines). */
  readonly stdin: AsyncIterable<Buffer | string> & { readonly isTTY?: boolean };
  /** Aborted when the process is asked to stop; long-running commands then shut down cleanly. */
  readonly signal: AbortSignal;
  /**
   * Relative paths (`--path`, `--config`, key files) are resolved against it.
   * @default process.cwd()
   */
  readonly cwd?: string;
}

/** Writes whole lines to an output, waiting for `drain` when a stream asks to. */
export class LineWriter {
  constructor(private readonly output: CliOutput) {}

  /** Writes `text` and a newline. */
  async line(text: string): Promise<void> {
    const output = this.output;
    const more = output.write(`${text}\n`);
    if (more !== false || output.once === undefined || output.off === undefined) return;
    // A closed pipe never drains: `close` or `error` end the wait too (the stop signal follows).
    await new Promise<void>((resolve) => {
      const events = ['drain', 'close', 'error'] as const;
      const done = (): void => {
        for (const event of events) output.off?.(event, done);
        resolve();
      };
      for (const event of events) output.once?.(event, done);
    });
  }

  /** One JSON object per line (`--json`). */
  async json(value: unknown): Promise<void> {
    await this.line(JSON.stringify(value));
  }
}

/**
 * The real process's io: stdout, stderr, stdin, and a signal aborted on the first SIGINT or
 * SIGTERM (a second one exits at once with 130). `dispose` removes the handlers.
 */
export function processIo(): { readonly io: CliIo; dispose(): void } {
  const controller = new AbortController();
  let stops = 0;
  const onSignal = (): void => {
    stops += 1;
    if (stops > 1) process.exit(130);
    controller.abort(new Error('stopped by signal'));
  };
  // A closed pipe (`sluice read ... | head`) is no error: stop reading and exit quietly.
  const onStdoutError = (error: NodeJS.ErrnoException): void => {
    if (error.code === 'EPIPE') controller.abort(error);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.on('error', onStdoutError);
  return {
    io: {
      stdout: process.stdout,
      stderr: process.stderr,
      stdin: process.stdin,
      signal: controller.signal,
      cwd: process.cwd(),
    },
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.stdout.off('error', onStdoutError);
    },
  };
}

/** Resolves when `signal` aborts. */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
