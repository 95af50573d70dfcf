/**
 * Decoder microbenchmark: the CPU time per event of the read side of `@sluice/framing` on
 * catch-up shaped input (batches of 1000 events, several batches per chunk as a storage read
 * hands them over), for 100 B and 1 KiB payloads: `StreamDecoder` with and without the batch
 * digests, and `scanSealedBatches` (the same checks, no event objects). CPU time, not wall
 * time, so a shared machine skews it less; the median of several rounds.
 *
 *   npm run bench:decode               full run
 *   npm run bench:decode -- --smoke    a quick check that it works (CI)
 */
import { parseArgs } from 'node:util';
import { FLAG_COMMIT_FIRST, FLAG_COMMIT_LAST, FrameWriter, StreamDecoder, ZERO_DIGEST, crc32cImplementation, scanSealedBatches } from '@sluice/framing';
import { markdownTable } from './stats.js';

/** One measured case: what was decoded, how, and the median CPU time per event. */
export interface DecodeBenchRow {
  readonly payloadBytes: number;
  readonly mode: 'decoder, no digests' | 'decoder, digests' | 'scanSealedBatches, digests';
  readonly nsPerEvent: number;
  readonly events: number;
}

const BATCH_EVENTS = 1000;
const BATCHES_PER_CHUNK = 5;

/** Chunks of sealed batches (seq 1 on), as a catch-up read of a file partition returns them. */
function catchUpChunks(batches: number, payloadBytes: number): Uint8Array[] {
  const writer = new FrameWriter();
  const payload = new Uint8Array(payloadBytes).fill(7);
  const chunks: Uint8Array[] = [];
  let seq = 1;
  for (let b = 0; b < batches; b++) {
    for (let i = 0; i < BATCH_EVENTS; i++, seq++) {
      const flags = (i === 0 ? FLAG_COMMIT_FIRST : 0) | (i === BATCH_EVENTS - 1 ? FLAG_COMMIT_LAST : 0);
      writer.appendEvent(seq, 1, 1_700_000_000_000, flags, `stream-${b % 1000}`, i + 1, 'Deposited', i === 0 ? { commandIds: [`cmd-${b}`] } : undefined, undefined, payload);
    }
    writer.seal(1, 1_700_000_000_000);
    if ((b + 1) % BATCHES_PER_CHUNK === 0 || b === batches - 1) {
      chunks.push(Uint8Array.from(writer.bytes()));
      writer.reset();
    }
  }
  return chunks;
}

function decodeAll(chunks: readonly Uint8Array[], verifyDigest: boolean): number {
  const decoder = new StreamDecoder({ firstSeq: 1, verifyDigest, prevDigest: ZERO_DIGEST });
  let payloadBytes = 0;
  for (const chunk of chunks) for (const batch of decoder.push(chunk)) for (const frame of batch.frames) payloadBytes += frame.payload.length;
  if (decoder.end().reason !== 'end') throw new Error('[sluice/bench] decode-bench: the generated log did not decode cleanly');
  return payloadBytes;
}

function scanAll(chunks: readonly Uint8Array[]): number {
  let firstSeq = 1;
  let prevDigest = ZERO_DIGEST;
  for (const chunk of chunks) {
    const { spans, reason } = scanSealedBatches(chunk, { firstSeq, prevDigest });
    if (reason !== 'end') throw new Error(`[sluice/bench] decode-bench: the generated log did not scan cleanly (${reason})`);
    firstSeq = spans[spans.length - 1].lastSeq + 1;
    prevDigest = spans[spans.length - 1].marker.digest;
  }
  return firstSeq - 1;
}

/** Runs every case; smoke mode decodes a few batches once each. */
export function runDecodeBench(options: { readonly smoke: boolean }): DecodeBenchRow[] {
  const batches = options.smoke ? 3 : 200;
  const rounds = options.smoke ? 1 : 11;
  const rows: DecodeBenchRow[] = [];
  let sink = 0;
  for (const payloadBytes of [100, 1024]) {
    const chunks = catchUpChunks(batches, payloadBytes);
    const events = batches * BATCH_EVENTS;
    const cases: [DecodeBenchRow['mode'], () => number][] = [
      ['decoder, no digests', () => decodeAll(chunks, false)],
      ['decoder, digests', () => decodeAll(chunks, true)],
      ['scanSealedBatches, digests', () => scanAll(chunks)],
    ];
    for (const [mode, run] of cases) {
      const samples: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const before = process.cpuUsage();
        sink += run();
        const used = process.cpuUsage(before);
        samples.push(((used.user + used.system) * 1000) / events);
      }
      samples.sort((a, b) => a - b);
      rows.push({ payloadBytes, mode, nsPerEvent: samples[Math.floor(samples.length / 2)], events });
    }
  }
  if (sink === 0.5) console.log(sink); // keeps the results observable
  return rows;
}

export function formatDecodeRows(rows: readonly DecodeBenchRow[]): string {
  return markdownTable(
    ['payload', 'what', 'CPU ns/event (median)', 'events/CPU-s'],
    rows.map((r) => [`${r.payloadBytes} B`, r.mode, r.nsPerEvent.toFixed(0), `${(1000 / r.nsPerEvent).toFixed(2)} M`]),
  );
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean' } } });
  const rows = runDecodeBench({ smoke: values.smoke === true });
  console.log(`\nDecode (${values.smoke === true ? 'smoke' : 'full'}), CRC-32C ${crc32cImplementation}, Node ${process.version}, ${process.arch}\n`);
  console.log(formatDecodeRows(rows));
}
