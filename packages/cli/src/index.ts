export { run } from './run.js';
export { ExitCode, exitCodeOf } from './exit-codes.js';
export type { ExitCodeValue } from './exit-codes.js';
export { CliError, InterruptedError, NotFoundError, UsageError } from './cli-errors.js';
export { processIo } from './io.js';
export type { CliIo, CliOutput } from './io.js';
