export { createFileStorage, fileStorageDefaults, type FileStorageOptions } from './file-storage.js';
export { openFileReader, type FileReader, type FileReaderOptions, type TailOptions } from './file-reader.js';
export { LOCK_FILE } from '@sluice/store';
