export { describeStorageConformance, type ConformanceLocation, type ConformanceTarget } from './storage-conformance.js';
