import { readdir } from 'node:fs/promises';
import { openPartition, parseFsyncPolicy, type AppendRequest, type FsyncPolicy, type RecordedEvent } from '@sluice/store';
import { createFileStorage, openFileReader, type FileReader } from '@sluice/store-file';
import { InterruptedError, NotFoundError, UsageError } from '../cli-errors.js';
import type { EventSink, EventSource, HeadInfo, ReadRange } from './event-log.js';

/**
 * Opens a local partition folder for appending: takes the writer lock (a second writer, such
 * as a running node, makes this fail with `Locked`) and creates the folder when missing.
 */
export async function openLocalSink(directory: string, fsync: string): Promise<EventSink> {
  let policy: FsyncPolicy;
  try {
    policy = parseFsyncPolicy(fsync);
  } catch (error) {
    throw new UsageError(`--fsync must be "commit", "none" or "interval:<ms>ms" (got ${JSON.stringify(fsync)})`, { cause: error });
  }
  const partition = await openPartition({ storage: createFileStorage({ directory, fsync: policy }), name: directory });
  return {
    description: directory,
    append: (request: AppendRequest) => partition.append(request),
    close: () => partition.close(),
  };
}

/**
 * Opens a local partition folder for reading, without a lock: works while a writer (a node, a
 * `sluice append`) runs in another process. A folder without a log is "not found".
 */
export async function openLocalSource(directory: string): Promise<EventSource> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    throw new NotFoundError(`no partition at ${directory}: check --path (\`sluice append\` creates one)`, { cause: error });
  }
  if (!names.some((name) => name.endsWith('.seg'))) {
    throw new NotFoundError(`${directory} holds no partition log (no *.seg files): check --path`);
  }
  return new LocalSource(directory, await openFileReader({ directory }));
}

class LocalSource implements EventSource {
  constructor(
    readonly description: string,
    private readonly reader: FileReader,
  ) {}

  lastSeq(): Promise<number> {
    return this.reader.lastSeq();
  }

  async *read(range: ReadRange): AsyncGenerator<readonly RecordedEvent[]> {
    if (range.fromSeq > range.toSeq) return;
    for await (const batch of this.reader.read(range.fromSeq, range.toSeq)) {
      const events = batch.frames.filter(
        (frame) =>
          frame.seq >= range.fromSeq &&
          frame.seq <= range.toSeq &&
          (range.streamId === undefined || frame.streamId === range.streamId),
      );
      yield events;
      if (range.signal.aborted || batch.lastSeq >= range.toSeq) return;
    }
  }

  async *tail(range: Omit<ReadRange, 'toSeq'>): AsyncGenerator<readonly RecordedEvent[]> {
    for await (const batch of this.reader.tail(range.fromSeq, { signal: range.signal })) {
      yield batch.frames.filter(
        (frame) => frame.seq >= range.fromSeq && (range.streamId === undefined || frame.streamId === range.streamId),
      );
    }
  }

  /** The file log has no stream index: the streams are counted by one scan of the log. */
  async head(
    streamId: string | undefined,
    onProgress: (scanned: number, lastSeq: number) => void,
    signal: AbortSignal,
  ): Promise<HeadInfo> {
    const lastSeq = await this.reader.lastSeq();
    const streams = new Set<string>();
    let streamVersion = 0;
    for await (const events of this.read({ fromSeq: 1, toSeq: lastSeq, signal })) {
      for (const event of events) {
        streams.add(event.streamId);
        if (event.streamId === streamId) streamVersion = event.streamVersion;
      }
      if (events.length > 0) onProgress(events[events.length - 1].seq, lastSeq);
      if (signal.aborted) throw new InterruptedError(`head stopped while counting the streams of ${this.description}`);
    }
    return { lastSeq, streamCount: streams.size, ...(streamId === undefined ? {} : { streamVersion }) };
  }

  close(): Promise<void> {
    return this.reader.close();
  }
}
