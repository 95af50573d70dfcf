import { LineWriter, type CliIo } from '../io.js';
import { openClusterSource } from '../targets/cluster-target.js';
import type { EventSource } from '../targets/event-log.js';
import { openLocalSource } from '../targets/local-target.js';
import { resolveTarget, type TargetFlags } from '../targets/target-options.js';

/** Opens the partition the read commands name: a local folder, or one partition through a broker. */
export async function openSource(flags: TargetFlags & { readonly pollMs?: number }, io: CliIo): Promise<EventSource> {
  const target = await resolveTarget(flags, io.cwd ?? process.cwd());
  if (target.kind === 'local') return openLocalSource(target.directory);
  const stderr = new LineWriter(io.stderr);
  for (const warning of target.warnings) await stderr.line(warning);
  return openClusterSource(target.connection, flags.pollMs ?? 250);
}
