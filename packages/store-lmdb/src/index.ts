export { createLmdbStorage, lmdbStorageDefaults, type LmdbStorageOptions } from './lmdb-storage.js';
export { openLmdbReader, type LmdbReaderOptions } from './lmdb-reader.js';
export { LOCK_FILE } from '@sluice/store';
