/**
 * What this process must undo if it is interrupted (Ctrl-C, a kill, a crash): the servers it
 * started, each stopped by the PID it recorded at start, and the run's temporary folder.
 * Only what was registered here is touched.
 */
const pending: Array<() => Promise<void>> = [];

/** Records a cleanup (stop a server by its PID, remove a folder); returns the function that forgets it. */
export function trackCleanup(cleanup: () => Promise<void>): () => void {
  pending.push(cleanup);
  return () => {
    const at = pending.indexOf(cleanup);
    if (at >= 0) pending.splice(at, 1);
  };
}

/** Runs every cleanup still registered, newest first (servers before the folder they live in), ignoring failures. */
export async function runCleanups(): Promise<void> {
  while (pending.length > 0) {
    const cleanup = pending.pop() as () => Promise<void>;
    await cleanup().catch(() => undefined);
  }
}
