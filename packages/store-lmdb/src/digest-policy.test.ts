import { describeDigestPolicy } from '@sluice/store-conformance';
import { createLmdbStorage } from './index.js';

describeDigestPolicy('lmdb', (directory) => createLmdbStorage({ directory }));
