import { LineWriter, type CliIo } from '../io.js';
import { startProgress } from '../progress.js';
import type { TargetFlags } from '../targets/target-options.js';
import { openSource } from './open-source.js';

/** Options of `sluice head`. */
export interface HeadFlags extends TargetFlags {
  readonly stream?: string;
  readonly json: boolean;
}

/** `sluice head`: last seq, stream count and, with `--stream`, that stream's version. */
export async function headCommand(flags: HeadFlags, io: CliIo): Promise<void> {
  const source = await openSource(flags, io);
  const stdout = new LineWriter(io.stdout);
  try {
    let progress: ReturnType<typeof startProgress> | undefined;
    const head = await source.head(
      flags.stream,
      (scanned, lastSeq) => {
        progress ??= startProgress(io.stderr, { json: flags.json, total: lastSeq, label: 'counting streams' });
        progress.update(scanned);
      },
      io.signal,
    ).finally(() => progress?.stop());
    if (flags.json) {
      await stdout.json({
        partition: source.description,
        ...head,
        ...(flags.stream === undefined ? {} : { stream: flags.stream }),
      });
      return;
    }
    await stdout.line(`partition: ${source.description}`);
    await stdout.line(`last seq: ${head.lastSeq}`);
    await stdout.line(`streams: ${head.streamCount}`);
    if (flags.stream !== undefined) await stdout.line(`stream ${flags.stream}: version ${head.streamVersion ?? 0}`);
    if (head.epoch !== undefined) await stdout.line(`epoch: ${head.epoch}`);
    if (head.writable !== undefined) await stdout.line(`writable: ${head.writable ? 'yes' : 'no (faulted or closing: the node reports and reopens faulted partitions; see its log)'}`);
    if (head.recovery !== undefined) {
      const { droppedSeqs, droppedBytes, droppedReason } = head.recovery;
      await stdout.line(
        `recovery: dropped ${droppedSeqs} never-durable seq(s) and ${droppedBytes} bytes of torn tail when the node opened it${droppedReason === undefined ? '' : ` (${droppedReason})`}`,
      );
    }
  } finally {
    await source.close();
  }
}
