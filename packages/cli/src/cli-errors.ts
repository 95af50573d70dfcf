/** Base class of the errors the `sluice` command raises itself; `code` picks the exit code. */
export class CliError extends Error {
  override readonly name: string = 'CliError';
  readonly code: string = 'SLUICE_CLI';
}

/** The command line is wrong: a missing or bad option, input that is not what the command takes. */
export class UsageError extends CliError {
  override readonly name = 'UsageError';
  override readonly code = 'SLUICE_CLI_USAGE';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** A partition folder, config file or key file does not exist. */
export class NotFoundError extends CliError {
  override readonly name = 'NotFoundError';
  override readonly code = 'SLUICE_CLI_NOT_FOUND';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** SIGINT or SIGTERM stopped a command that had work left (a read, an append from stdin). */
export class InterruptedError extends CliError {
  override readonly name = 'InterruptedError';
  override readonly code = 'SLUICE_CLI_INTERRUPTED';
  constructor(what: string) {
    super(`interrupted: ${what}`);
  }
}
