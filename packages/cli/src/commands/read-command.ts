import { InterruptedError, UsageError } from '../cli-errors.js';
import { eventToJson, eventToText } from '../event-format.js';
import { LineWriter, type CliIo } from '../io.js';
import { startProgress } from '../progress.js';
import type { TargetFlags } from '../targets/target-options.js';
import { openSource } from './open-source.js';

/** Options of `sluice read`. */
export interface ReadFlags extends TargetFlags {
  readonly fromSeq: number;
  readonly toSeq?: number;
  readonly stream?: string;
  readonly maxCount?: number;
  readonly json: boolean;
}

/** `sluice read`: committed events by seq (optionally of one stream), then exit. */
export async function readCommand(flags: ReadFlags, io: CliIo): Promise<void> {
  if (flags.toSeq !== undefined && flags.toSeq < flags.fromSeq) {
    throw new UsageError(`--to-seq ${flags.toSeq} is before --from-seq ${flags.fromSeq}`);
  }
  const source = await openSource(flags, io);
  const stdout = new LineWriter(io.stdout);
  try {
    const lastSeq = await source.lastSeq();
    const toSeq = Math.min(flags.toSeq ?? lastSeq, lastSeq);
    const total = Math.max(0, toSeq - flags.fromSeq + 1);
    const progress = startProgress(io.stderr, { json: flags.json, total: Math.min(total, flags.maxCount ?? total), label: 'read' });
    let count = 0;
    const maxCount = flags.maxCount ?? Number.POSITIVE_INFINITY;
    try {
      reading: for await (const events of source.read({ fromSeq: flags.fromSeq, toSeq, streamId: flags.stream, signal: io.signal })) {
        for (const event of events) {
          await (flags.json ? stdout.json(eventToJson(event)) : stdout.line(eventToText(event)));
          count += 1;
          if (count >= maxCount) break reading;
        }
        const last = events[events.length - 1];
        // With --stream or --max-count the seqs covered, not the events printed, measure the work.
        if (last !== undefined) progress.update(flags.maxCount === undefined || flags.stream !== undefined ? last.seq - flags.fromSeq + 1 : count);
        if (io.signal.aborted) break;
      }
    } finally {
      progress.stop();
    }
    if (io.signal.aborted && count < maxCount) throw new InterruptedError(`${count} event(s) were read`);
  } finally {
    await source.close();
  }
}
