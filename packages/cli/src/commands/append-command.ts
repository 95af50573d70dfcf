import type { AppendRequest, CommitResult, ExpectedVersion } from '@sluice/store';
import { InterruptedError, UsageError } from '../cli-errors.js';
import { lineRequest, readLines, singleEventRequest } from '../event-input.js';
import { LineWriter, type CliIo } from '../io.js';
import { openClusterSink } from '../targets/cluster-target.js';
import type { EventSink } from '../targets/event-log.js';
import { openLocalSink } from '../targets/local-target.js';
import { resolveTarget, type TargetFlags } from '../targets/target-options.js';

/** Options of `sluice append`. */
export interface AppendFlags extends TargetFlags {
  readonly stream?: string;
  readonly type?: string;
  readonly data?: string;
  readonly metadata?: string;
  readonly expectedVersion?: ExpectedVersion;
  readonly commandId?: string;
  readonly correlationId?: string;
  readonly fsync: string;
  readonly inFlight?: number;
  readonly json: boolean;
}

/**
 * Local appends may be pipelined: one partition writer applies them in the order sent. A
 * cluster may apply requests in flight together in any order, so one at a time by default.
 */
const LOCAL_IN_FLIGHT = 256;
const CLUSTER_IN_FLIGHT = 1;

/** `sluice append`: one event from `--data`, or JSON lines from stdin. */
export async function appendCommand(flags: AppendFlags, io: CliIo): Promise<void> {
  const stdout = new LineWriter(io.stdout);
  const stderr = new LineWriter(io.stderr);
  const single = flags.data !== undefined;
  if (single && (flags.stream === undefined || flags.type === undefined)) {
    throw new UsageError('--data needs --stream <id> and --type <name>');
  }
  if (!single) {
    if (flags.expectedVersion !== undefined || flags.commandId !== undefined || flags.metadata !== undefined) {
      throw new UsageError(
        '--expected-version, --command-id and --metadata go with --data; for stdin lines put expectedVersion, commandId and metadata in each line',
      );
    }
    if (io.stdin.isTTY === true) {
      throw new UsageError('give one event with --stream, --type and --data, or pipe JSON lines into stdin (see --help)');
    }
  }
  const target = await resolveTarget(flags, io.cwd ?? process.cwd());
  if (target.kind === 'cluster') for (const warning of target.warnings) await stderr.line(warning);
  const sink = target.kind === 'local' ? await openLocalSink(target.directory, flags.fsync) : await openClusterSink(target.connection);
  try {
    const report = async (result: CommitResult, line: number | undefined): Promise<void> => {
      if (flags.json) {
        await stdout.json({ ...(line === undefined ? {} : { line }), ...result });
        return;
      }
      const streams = result.streams.map((stream) => `${stream.streamId}@${stream.version}`).join(', ');
      const seqs = result.firstSeq === result.lastSeq ? `#${result.firstSeq}` : `#${result.firstSeq}..#${result.lastSeq}`;
      await stdout.line(`${result.duplicate ? 'duplicate of' : 'appended'} ${seqs} ${streams}`);
    };
    if (single) {
      const request = singleEventRequest({
        stream: flags.stream as string,
        type: flags.type as string,
        data: flags.data as string,
        metadata: flags.metadata,
        expectedVersion: flags.expectedVersion,
        commandId: flags.commandId,
        correlationId: flags.correlationId,
      });
      await report(await sink.append(request), undefined);
      return;
    }
    const inFlight = flags.inFlight ?? (target.kind === 'local' ? LOCAL_IN_FLIGHT : CLUSTER_IN_FLIGHT);
    await appendLines(sink, flags, io, inFlight, report, stderr);
  } finally {
    await sink.close();
  }
}

/**
 * Appends stdin's lines in order, up to `inFlight` at once, and reports each result in line
 * order. The first failure stops sending; appends already sent finish and are reported, then
 * the failure is thrown (its exit code is the command's).
 */
async function appendLines(
  sink: EventSink,
  flags: AppendFlags,
  io: CliIo,
  inFlight: number,
  report: (result: CommitResult, line: number) => Promise<void>,
  stderr: LineWriter,
): Promise<void> {
  const window: { line: number; result: Promise<CommitResult> }[] = [];
  let failure: { line: number; error: unknown } | undefined;
  let appended = 0;
  const settleOldest = async (): Promise<void> => {
    const oldest = window.shift();
    if (oldest === undefined) return;
    try {
      await report(await oldest.result, oldest.line);
      appended += 1;
    } catch (error) {
      failure ??= { line: oldest.line, error };
    }
  };
  let lineNumber = 0;
  let interrupted = false;
  try {
    for await (const text of readLines(io.stdin)) {
      lineNumber += 1;
      if (io.signal.aborted) {
        interrupted = true;
        break;
      }
      if (failure !== undefined) break;
      if (text.trim().length === 0) continue;
      let request: AppendRequest;
      try {
        request = lineRequest(text, lineNumber, { stream: flags.stream, type: flags.type });
      } catch (error) {
        failure = { line: lineNumber, error };
        break;
      }
      const result = sink.append(request);
      result.catch(() => undefined); // handled when its turn comes
      window.push({ line: lineNumber, result });
      while (window.length >= inFlight) await settleOldest();
    }
  } catch (error) {
    failure ??= { line: lineNumber, error }; // reading stdin failed (e.g. a line too long)
  }
  while (window.length > 0) await settleOldest();
  if (failure !== undefined) {
    await stderr.line(`sluice append: stopped at stdin line ${failure.line}; ${appended} line(s) were appended, each reported on stdout`);
    throw failure.error;
  }
  if (interrupted) throw new InterruptedError(`${appended} line(s) appended, the rest of stdin was not read`);
}
