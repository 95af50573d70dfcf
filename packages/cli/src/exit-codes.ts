/**
 * The `sluice` command's exit codes. Scripts may rely on them; new codes are only ever added.
 *
 * | code | meaning |
 * |---|---|
 * | 0 | success (also: a broker, node or tail stopped by SIGINT / SIGTERM; stdout's reader gone) |
 * | 1 | usage error: bad arguments, invalid input or config |
 * | 2 | not found: no such partition folder, unknown partition, no route for a stream |
 * | 3 | conflict: wrong expected version, command id used for another commit, fenced writer |
 * | 4 | unavailable: storage or cluster unreachable, locked, overloaded, full, broker timeout |
 * | 5 | refused: CURVE authentication failed, storage credentials refused |
 * | 6 | data error: corrupt log, incompatible protocol or format versions |
 * | 70 | internal error: a bug; please report it with the message |
 * | 130 | interrupted: SIGINT / SIGTERM stopped a command before it finished its work |
 */
export const ExitCode = {
  Ok: 0,
  Usage: 1,
  NotFound: 2,
  Conflict: 3,
  Unavailable: 4,
  Refused: 5,
  DataError: 6,
  Internal: 70,
  Interrupted: 130,
} as const;

/** One of the {@link ExitCode} values. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

const BY_CODE: Readonly<Record<string, ExitCodeValue>> = {
  SLUICE_CLI_USAGE: ExitCode.Usage,
  SLUICE_CLI_NOT_FOUND: ExitCode.NotFound,
  SLUICE_CLI_INTERRUPTED: ExitCode.Interrupted,
  SLUICE_CLI_DAMAGED: ExitCode.DataError,
  // @sluice/store
  SLUICE_INVALID_REQUEST: ExitCode.Usage,
  SLUICE_WRONG_EXPECTED_VERSION: ExitCode.Conflict,
  SLUICE_COMMAND_ID_CONFLICT: ExitCode.Conflict,
  SLUICE_PARTITION_CLOSED: ExitCode.Unavailable,
  SLUICE_PARTITION_FAULTED: ExitCode.Unavailable,
  SLUICE_PARTITION_OVERLOADED: ExitCode.Unavailable,
  // @sluice/config, @sluice/node
  SLUICE_CONFIG: ExitCode.Usage,
  SLUICE_NODE_UNREGISTERED_LOCATION: ExitCode.Usage,
  // @sluice/majordomo, @sluice/client
  SLUICE_BROKER_INVALID_OPTIONS: ExitCode.Usage,
  SLUICE_BROKER_INVALID_REQUEST: ExitCode.Usage,
  SLUICE_BROKER_UNKNOWN_PARTITION: ExitCode.NotFound,
  SLUICE_BROKER_UNROUTABLE_STREAM: ExitCode.NotFound,
  SLUICE_BROKER_TIMEOUT: ExitCode.Unavailable,
  SLUICE_BROKER_REJECTED: ExitCode.Unavailable,
  SLUICE_BROKER_PARTITION_UNAVAILABLE: ExitCode.Unavailable,
  SLUICE_BROKER_BIND: ExitCode.Unavailable,
  SLUICE_BROKER_CLOSED: ExitCode.Unavailable,
  SLUICE_BROKER_AUTHENTICATION: ExitCode.Refused,
  SLUICE_BROKER_ABORTED: ExitCode.Interrupted,
  SLUICE_BROKER_MALFORMED_STORE_REPLY: ExitCode.DataError,
  SLUICE_BROKER_UNSUPPORTED_STORE_PROTOCOL: ExitCode.DataError,
};

const BY_STORAGE_REASON: Readonly<Record<string, ExitCodeValue>> = {
  NotFound: ExitCode.NotFound,
  Conflict: ExitCode.Conflict,
  Locked: ExitCode.Unavailable,
  Unavailable: ExitCode.Unavailable,
  Full: ExitCode.Unavailable,
  Closed: ExitCode.Unavailable,
  Unauthorized: ExitCode.Refused,
  Corrupt: ExitCode.DataError,
  Unsupported: ExitCode.DataError,
  Invalid: ExitCode.Usage,
};

/**
 * The exit code for an error, by its stable `code` (so errors from another copy of a package
 * map the same way). An error without a known code is looked up through its `cause`; what
 * is still unknown is an internal error.
 */
export function exitCodeOf(error: unknown): ExitCodeValue {
  for (let current = error, depth = 0; current !== undefined && depth < 5; depth += 1) {
    if (typeof current !== 'object' || current === null) break;
    const { code, reason, cause } = current as { code?: unknown; reason?: unknown; cause?: unknown };
    if (code === 'SLUICE_STORAGE' && typeof reason === 'string') return BY_STORAGE_REASON[reason] ?? ExitCode.Unavailable;
    if (typeof code === 'string' && code in BY_CODE) return BY_CODE[code];
    current = cause;
  }
  return ExitCode.Internal;
}
