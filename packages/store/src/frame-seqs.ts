import { StorageError } from './errors.js';

/**
 * Checks the `seqs` of a `readFrames` call (see `StorageReader.readFrames`): safe integers,
 * strictly ascending (no duplicates), from 1 up to `durableSeq`. Throws `StorageError` reason
 * `Invalid` naming the first offending seq. Backends share it so every one refuses the same
 * input the same way.
 */
export function checkFrameSeqs(seqs: readonly number[], durableSeq: number, where: string): void {
  if (!Array.isArray(seqs)) throw new StorageError('Invalid', `${where}: readFrames(seqs) needs an array of seqs`);
  let previous = 0;
  for (let i = 0; i < seqs.length; i++) {
    const seq = seqs[i];
    if (!Number.isSafeInteger(seq) || seq < 1) {
      throw new StorageError('Invalid', `${where}: readFrames: seqs[${i}] is ${String(seq)}, not a seq (an integer of at least 1)`);
    }
    if (seq <= previous) {
      throw new StorageError('Invalid', `${where}: readFrames: seqs[${i}] (${seq}) does not follow ${previous}: pass seqs ascending, without duplicates`);
    }
    if (seq > durableSeq) {
      throw new StorageError('Invalid', `${where}: readFrames: seq ${seq} is above the durable head (${durableSeq}): only durable frames are served`);
    }
    previous = seq;
  }
}
