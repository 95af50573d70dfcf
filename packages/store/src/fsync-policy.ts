/**
 * When a storage backend forces appended bytes to stable storage before acknowledging.
 * - `commit`: before a commit is acknowledged (no acknowledged commit is lost on power failure).
 * - `interval`: commits are acknowledged once written to the OS; a timer syncs every `intervalMs`
 *   (a power failure can lose up to that window; a process crash loses nothing).
 * - `none`: never forced; the OS writes back when it likes.
 */
export type FsyncPolicy = { readonly kind: 'commit' } | { readonly kind: 'interval'; readonly intervalMs: number } | { readonly kind: 'none' };

/** The forms a config file or option may use: `"commit"`, `"none"`, `"interval:100ms"`, or an object. */
export type FsyncPolicyInput = 'commit' | 'none' | `interval:${number}ms` | { readonly intervalMs: number } | FsyncPolicy;

/**
 * Parses an fsync policy, throwing a `TypeError` that names the accepted forms.
 *
 * @example
 * parseFsyncPolicy('interval:100ms') // { kind: 'interval', intervalMs: 100 }
 */
export function parseFsyncPolicy(input: FsyncPolicyInput | string): FsyncPolicy {
  if (input === 'commit' || input === 'none') return { kind: input };
  if (typeof input === 'string') {
    const m = /^interval:(\d+)ms$/.exec(input);
    if (m !== null && Number(m[1]) > 0) return { kind: 'interval', intervalMs: Number(m[1]) };
  } else if (typeof input === 'object' && input !== null) {
    if ('kind' in input) {
      if (input.kind === 'commit' || input.kind === 'none') return { kind: input.kind };
      if (input.kind === 'interval' && Number.isSafeInteger(input.intervalMs) && input.intervalMs > 0) return { kind: 'interval', intervalMs: input.intervalMs };
    } else if (Number.isSafeInteger(input.intervalMs) && input.intervalMs > 0) {
      return { kind: 'interval', intervalMs: input.intervalMs };
    }
  }
  throw new TypeError(
    `[sluice/store] invalid fsync policy ${JSON.stringify(input)}: use "commit", "none" or "interval:<ms>ms" (e.g. "interval:100ms")`,
  );
}

/** The policy in words, for capabilities and logs. */
export function describeFsyncPolicy(policy: FsyncPolicy): string {
  if (policy.kind === 'commit') return 'fdatasync before a commit is acknowledged';
  if (policy.kind === 'interval') return `acknowledged once written to the OS; fdatasync every ${policy.intervalMs} ms`;
  return 'acknowledged once written to the OS; never forced to disk';
}
