import { describeDigestPolicy } from '@sluice/store-conformance';
import { createFileStorage } from './index.js';

describeDigestPolicy('file', (directory) => createFileStorage({ directory, segmentBytes: 64 * 1024 }));
