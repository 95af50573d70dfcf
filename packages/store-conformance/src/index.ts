export { describeStorageConformance, type ConformanceLocation, type ConformanceTarget } from './storage-conformance.js';
export { describeDigestPolicy } from './digest-policy.js';
