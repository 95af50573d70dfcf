import { eventToJson, eventToText } from '../event-format.js';
import { LineWriter, type CliIo } from '../io.js';
import type { TargetFlags } from '../targets/target-options.js';
import { openSource } from './open-source.js';

/** Options of `sluice tail`. */
export interface TailFlags extends TargetFlags {
  /** Default: the seq after the last committed one (only new commits). */
  readonly fromSeq?: number;
  readonly stream?: string;
  readonly pollMs: number;
  readonly json: boolean;
}

/** `sluice tail`: prints new commits as they are written, until SIGINT / SIGTERM (then exits 0). */
export async function tailCommand(flags: TailFlags, io: CliIo): Promise<void> {
  const source = await openSource(flags, io);
  const stdout = new LineWriter(io.stdout);
  try {
    const fromSeq = flags.fromSeq ?? (await source.lastSeq()) + 1;
    for await (const events of source.tail({ fromSeq, streamId: flags.stream, signal: io.signal })) {
      for (const event of events) await (flags.json ? stdout.json(eventToJson(event)) : stdout.line(eventToText(event)));
    }
  } finally {
    await source.close();
  }
}
