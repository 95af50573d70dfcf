/**
 * Test harness of the file store's fault tests, for other packages' tests (e.g. mirrors with a
 * file location on a loop device): real ext4 filesystems on loop devices, image snapshots taken
 * as a power loss would leave them, and child-process fixtures bundled from TypeScript. Needs
 * root and the tools `requireTools` names; not part of the store's runtime API.
 */
export { bundleChild, type BundledChild } from './bundle-child.fixture.js';
export {
  attachImage,
  createLoopFilesystem,
  detach,
  killAtAcksAndSnapshot,
  readVmSetting,
  releaseAll,
  requireTools,
  sh,
  snapshotImage,
  type LoopFilesystem,
} from './loop-device.fixture.js';
