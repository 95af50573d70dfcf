/** One test of a run, as the summary reporter sees it. */
export interface RunTest {
  /** Path of the test file. */
  readonly moduleId: string;
  /** Suite names and test name joined with " > ". */
  readonly fullName: string;
  readonly state: 'passed' | 'failed' | 'skipped' | 'pending';
}

const SUITE_PREFIX = 'storage conformance:';

/**
 * What is wrong with the conformance coverage of a run: for each `packages/store-*` backend,
 * the suite tests it executed (passed or failed, never skipped) must number at least as many
 * as the reference run of `@sluice/store-conformance` itself. Counted from the run, not from
 * source text, so a backend that skips, filters or never registers the suite is caught.
 */
export function conformanceGaps(tests: readonly RunTest[], backends: readonly string[]): string[] {
  const executed = new Map<string, number>();
  const skipped = new Map<string, number>();
  for (const t of tests) {
    if (!t.fullName.startsWith(SUITE_PREFIX)) continue;
    const pkg = /packages\/([^/]+)\//.exec(t.moduleId.replaceAll('\\', '/'))?.[1];
    if (pkg === undefined) continue;
    const counts = t.state === 'passed' || t.state === 'failed' ? executed : skipped;
    counts.set(pkg, (counts.get(pkg) ?? 0) + 1);
  }
  const reference = executed.get('store-conformance') ?? 0;
  const gaps: string[] = [];
  if (reference === 0) gaps.push('the reference run of the conformance suite (packages/store-conformance) executed no test');
  for (const backend of backends) {
    const ran = executed.get(backend) ?? 0;
    const skip = skipped.get(backend) ?? 0;
    if (ran < reference) gaps.push(`${backend} executed ${ran} of the ${reference} storage conformance tests`);
    if (skip > 0) gaps.push(`${backend} skipped ${skip} storage conformance tests`);
  }
  return gaps;
}
