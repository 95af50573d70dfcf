export { crc32c, crc32cImplementation, crc32cJs, NATIVE_CRC32C_BYTES_MIN, nativeCrc32c, nativeFrameCrcs, type NativeCrc32c, type NativeFrameCrcs } from './crc32c.js';
export { crc32cCombine } from './crc32c-combine.js';
export { FramingError, FrameTooLargeError, InvalidFrameFieldError } from './errors.js';
export { FrameWriter, type FrameWriterOptions } from './frame-writer.js';
export {
  CRC_BYTES,
  DEFAULT_FRAME_BYTES_MAX,
  EVENT_HEADER_BYTES,
  EVENT_HEADERS_BYTES_AT,
  EVENT_KIND_AT,
  EVENT_METADATA_BYTES_AT,
  EVENT_PAYLOAD_BYTES_AT,
  EVENT_SEQ_AT,
  EVENT_STREAM_ID_BYTES_AT,
  EVENT_STREAM_VERSION_AT,
  EVENT_TIMESTAMP_AT,
  EVENT_TYPE_BYTES_AT,
  EVENT_VERSION_AT,
  FLAG_COMMIT_FIRST,
  FLAG_COMMIT_LAST,
  FORMAT_VERSION,
  FORMAT_VERSION_BASE,
  FORMAT_VERSION_LEVEL,
  FORMAT_VERSION_MIN,
  FRAME_BYTES_MIN,
  KIND_EVENT,
  KIND_MARKER,
  MARKER_BYTES,
  MARKER_DIGEST_OFFSET,
  MARKER_PREV_DIGEST_OFFSET,
  MARKER_V1_BYTES,
  SHA1_BYTES,
  ZERO_DIGEST,
  readU16,
  readU32,
  readU53,
  NAME_BYTES_MAX,
} from './layout.js';
export { firstAtOrAfter } from './seq-search.js';
export { SequenceChecker, type SequenceCheckerOptions, type SequenceRunVerdict, type SequenceVerdict } from './sequence-checker.js';
export { scanSealedBatches, type BatchSpan, type ScanSealedBatchesOptions, type ScanSealedBatchesResult } from './batch-scan.js';
export { StreamDecoder, decodeBatches, decodeEventFrameAt, type StreamDecoderOptions } from './stream-decoder.js';
export type { CommitHeaders, CommitMarker, DecodeReport, EventFrame, SealedBatch, StopReason } from './types.js';
export {
  checkFramedEvents,
  framedEventsBytesBound,
  readFramedEvents,
  writeFramedEvents,
  type FramedEventInput,
  type FramedEventsInfo,
  type FramedEventsProblem,
} from './framed-events.js';
