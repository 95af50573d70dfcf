import { pino, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';
import type { CliOutput } from './io.js';

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** `sluice broker` or `sluice node`: the `name` field of every line. */
  readonly name: string;
  /** `debug` with `--verbose`. @default 'info' */
  readonly level?: 'debug' | 'info';
}

/**
 * The structured log of `sluice broker` and `sluice node`, on stderr (stdout carries the
 * endpoint line or `--json` events): pino JSON lines when stderr is not a terminal (for log
 * collectors), pino-pretty's readable lines when it is. Never given secrets: CURVE secret
 * keys stay in the socket options.
 */
export function createLogger(stderr: CliOutput, options: LoggerOptions): Logger {
  const pretty = stderr.isTTY === true ? prettyFactory({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }) : undefined;
  return pino(
    { name: options.name, level: options.level ?? 'info', base: { pid: process.pid } },
    { write: (line: string) => void stderr.write(pretty === undefined ? line : pretty(line)) },
  );
}

/**
 * Logs at most one line per `intervalMs` for a noisy event (rejected requests, malformed
 * messages), with how many were left out since the last line, so a flood cannot flood the log.
 */
export function throttled(intervalMs: number, log: (suppressed: number) => void): () => void {
  let last = 0;
  let suppressed = 0;
  return () => {
    const now = Date.now();
    if (now - last < intervalMs) {
      suppressed += 1;
      return;
    }
    last = now;
    log(suppressed);
    suppressed = 0;
  };
}
