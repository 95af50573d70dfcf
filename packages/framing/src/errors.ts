/** Base class of every error thrown by `@sluice/framing`. */
export class FramingError extends Error {
  override readonly name: string = 'FramingError';
  /** Stable machine-readable code, checked across package copies. */
  readonly code: string = 'SLUICE_FRAMING';
}

/** A frame would exceed the configured size limit. */
export class FrameTooLargeError extends FramingError {
  override readonly name = 'FrameTooLargeError';
  override readonly code = 'SLUICE_FRAME_TOO_LARGE';
  constructor(
    readonly frameBytes: number,
    readonly frameBytesMax: number,
    options?: ErrorOptions,
  ) {
    super(
      `[sluice/framing] frame of ${frameBytes} bytes exceeds frameBytesMax ${frameBytesMax}: ` +
        `split the event, store large blobs elsewhere and reference them, or raise frameBytesMax`,
      options,
    );
  }
}

/** A field cannot be encoded (name too long, seq not a safe integer, ...). */
export class InvalidFrameFieldError extends FramingError {
  override readonly name = 'InvalidFrameFieldError';
  override readonly code = 'SLUICE_INVALID_FRAME_FIELD';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`[sluice/framing] invalid ${field}: ${message}`);
  }
}
