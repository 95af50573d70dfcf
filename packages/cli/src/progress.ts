import cliProgress from 'cli-progress';
import type { CliOutput } from './io.js';

/** A progress display: `update` with the work done so far, `stop` when finished or aborted. */
export interface Progress {
  update(done: number): void;
  stop(): void;
}

/** Reads of fewer events than this finish too fast for a bar to help. */
export const PROGRESS_EVENTS_MIN = 1000;

const NO_PROGRESS: Progress = { update: () => undefined, stop: () => undefined };

/**
 * A progress bar on stderr for `total` units of work, drawn only where it helps and harms
 * nothing: stderr is a terminal, the output is not `--json`, and the work is long enough.
 * Otherwise a no-op, so scripts and pipes never see control characters.
 */
export function startProgress(stderr: CliOutput, options: { json: boolean; total: number; label: string }): Progress {
  if (stderr.isTTY !== true || options.json || options.total < PROGRESS_EVENTS_MIN) return NO_PROGRESS;
  const bar = new cliProgress.SingleBar(
    {
      // cli-progress only writes and moves the cursor: any output with `write` and `isTTY` will do.
      stream: stderr as unknown as NodeJS.WritableStream,
      format: `${options.label} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted}`,
      clearOnComplete: true,
      hideCursor: false,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(options.total, 0);
  return {
    update: (done) => bar.update(Math.min(done, options.total)),
    stop: () => bar.stop(),
  };
}
