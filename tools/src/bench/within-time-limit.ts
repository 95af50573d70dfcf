import type { BenchRow } from './stats.js';

/** Fewest events of the estimating run: enough that one slow first sync does not skew the estimate. */
const PROBE_EVENTS_MIN = 100;

/**
 * Runs a store-bench-style measurement (which has no time limit) within the scenario's time
 * limit: a small first run (also a warm-up) estimates the rate, the measured run then takes
 * as many events as fit in the limit, at most the scenario's count.
 */
export async function withinTimeLimit(
  scenario: { readonly batch: number; readonly appenders: number; readonly events: number; readonly timeLimitMs: number },
  measure: (events: number) => Promise<BenchRow>,
): Promise<BenchRow> {
  const probeEvents = Math.min(scenario.events, Math.max(scenario.batch * scenario.appenders * 2, PROBE_EVENTS_MIN));
  const probe = await measure(probeEvents);
  if (probe.events >= scenario.events || probe.seconds * 1000 >= scenario.timeLimitMs / 2) return probe;
  const fit = Math.floor(probe.eventsPerSecond * (scenario.timeLimitMs / 1000) * 0.8);
  return measure(Math.max(probeEvents, Math.min(scenario.events, fit)));
}
