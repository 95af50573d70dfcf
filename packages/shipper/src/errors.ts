/**
 * Why the shipper refused or failed:
 * - `Invalid`: bad options.
 * - `Diverged`: a target holds a different log than the source at the same seq.
 * - `Ahead`: a target holds seqs the source does not (the source lost or cut them).
 * - `Unavailable`: a target could not be reached (retried).
 * - `Quorum`: too few targets confirmed a commit in time (synchronous remote mode).
 * - `Stopped`: the shipper was stopped.
 */
export type ShipperErrorReason = 'Invalid' | 'Diverged' | 'Ahead' | 'Unavailable' | 'Quorum' | 'Stopped';

/** An error of the shipper; `reason` says which. */
export class ShipperError extends Error {
  override readonly name = 'ShipperError';
  readonly code = 'SLUICE_SHIPPER';
  constructor(
    readonly reason: ShipperErrorReason,
    message: string,
    options?: ErrorOptions & { readonly target?: string | undefined },
  ) {
    super(message, options);
    this.target = options?.target;
  }
  /** The target concerned, when there is one. */
  readonly target: string | undefined;
}

/** True for a {@link ShipperError}, also from another copy of this package. */
export function isShipperError(error: unknown): error is ShipperError {
  return error instanceof ShipperError || (error instanceof Error && (error as { code?: unknown }).code === 'SLUICE_SHIPPER');
}
