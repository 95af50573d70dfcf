export {
  OPERATOR_LOG,
  PREALLOCATE_MODES,
  SEGMENT_BYTES_MAX,
  SEGMENT_BYTES_MIN,
  createFileStorage,
  fileStorageDefaults,
  type FileStorageOptions,
  type PreallocateMode,
} from './file-storage.js';
export { openFileReader, type FileReader, type FileReaderOptions } from './file-reader.js';
export { SEGMENT_HEADER_BYTES } from './segment-header.js';
export { LOCK_FILE } from '@sluice/store';
