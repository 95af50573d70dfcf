import { InvalidArgumentError } from 'commander';

/** A commander argument parser for integers of at least `min`. */
export function integerAtLeast(flag: string, min: number): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(number) || number < min) {
      throw new InvalidArgumentError(`${flag} must be an integer of at least ${min}.`);
    }
    return number;
  };
}

/** Integers of at least 1. */
export function positiveInteger(flag: string): (value: string) => number {
  return integerAtLeast(flag, 1);
}
