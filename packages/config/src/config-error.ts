/** One problem found in a config file: where (a path like `levels.fast.fsync`) and what. */
export interface ConfigIssue {
  /** Path of the offending value, e.g. `levels.fast.locations[0].file`; `""` for the whole file. */
  readonly path: string;
  readonly message: string;
}

/**
 * A node config (`sluice.json`) is invalid; `issues` lists every problem found, each with
 * its path, so all of them can be fixed at once.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'SLUICE_CONFIG';
  constructor(
    readonly issues: readonly ConfigIssue[],
    /** The file the config came from, when it came from one. */
    readonly source?: string,
  ) {
    const where = source === undefined ? 'config' : `config ${source}`;
    const count = issues.length === 1 ? '1 problem' : `${issues.length} problems`;
    const lines = issues.map((issue) => `  - ${issue.path === '' ? '(file)' : issue.path}: ${issue.message}`);
    super(`[sluice/config] invalid ${where}, ${count}:\n${lines.join('\n')}`);
  }
}

/** True when `error` is a {@link ConfigError} from any copy of `@sluice/config`. */
export function isConfigError(error: unknown): error is ConfigError {
  return error instanceof ConfigError || (error instanceof Error && (error as { code?: unknown }).code === 'SLUICE_CONFIG');
}
