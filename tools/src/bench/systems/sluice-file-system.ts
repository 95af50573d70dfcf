import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MARKER_BYTES } from '@sluice/framing';
import { SEGMENT_BYTES_MAX, createFileStorage } from '@sluice/store-file';
import type { AppendScenario, BenchSystem } from '../bench-system.js';
import { eventLogSession } from '../event-log-session.js';
import { FRAME_OVERHEAD_BYTES } from '../workload.js';
import { openPartitionEventLog } from './partition-event-log.js';

/** Sluice's partition engine on the file store, fdatasync before every acknowledgement. */
export const sluiceFileSystem: BenchSystem = {
  id: 'sluice-file',
  label: 'Sluice file store',
  group: 'sluice',
  configuration: 'one partition, 64 MiB preallocated segments, group commit, fsync: "commit"',
  durability: 'fdatasync before each append resolves: survives power loss',
  async setup(context) {
    return eventLogSession({
      open: (name) => openPartitionEventLog(createFileStorage({ directory: join(context.directory, name), fsync: 'commit' }), name),
    });
  },
};

/**
 * The same, with a command id stamped on every append as the store client does (a fresh
 * UUID, recorded and indexed): the embedded row the rows through the broker compare with.
 */
export const sluiceFileCommandIdSystem: BenchSystem = {
  id: 'sluice-file-ids',
  label: 'Sluice file store, a command id per append',
  group: 'sluice',
  configuration: 'one partition, 64 MiB preallocated segments, group commit, fsync: "commit", a crypto.randomUUID() command id per append (as the store client stamps)',
  durability: 'fdatasync before each append resolves: survives power loss',
  async setup(context) {
    return eventLogSession({
      open: (name) => openPartitionEventLog(createFileStorage({ directory: join(context.directory, name), fsync: 'commit' }), name, { commandIds: true }),
    });
  },
};

/**
 * The segment size for a scenario on zero-filled segments: twice the scenario's frames and
 * markers (the next segment is preallocated once one is half full, so the run never reaches
 * that point), in MiB, from 1 MiB to the 1 GiB the store allows. A full run's largest
 * scenarios write 512 MiB of frames (SCENARIO_BYTES_MAX): one 1 GiB segment.
 */
export function zeroFillSegmentBytes(scenario: AppendScenario): number {
  const frames = scenario.events * (scenario.payloadBytes + FRAME_OVERHEAD_BYTES + MARKER_BYTES / scenario.batch);
  const mib = 1024 * 1024;
  return Math.min(SEGMENT_BYTES_MAX, Math.max(mib, Math.ceil((2 * frames + 64 * 1024) / mib) * mib));
}

/**
 * The same engine on a segment zero-filled before the timer starts, as the disk's limit row
 * prepares its file: the partition is made with `preallocate: "zero-fill"` and one segment
 * twice the scenario's size, so every write lands in blocks that are already allocated and
 * written, and the scenario never reaches the point where the next segment is zero-filled in
 * the background. What a burst into reserved space does; a sustained writer on zero-filled
 * segments writes every byte twice (the file store's README, "Preallocation"). A run that did
 * start a second segment says so in its note.
 */
export const sluiceFileZeroFillSystem: BenchSystem = {
  id: 'sluice-file-zero-fill',
  label: 'Sluice file store, zero-filled segment',
  group: 'sluice',
  configuration: 'one partition, preallocate: "zero-fill", one segment of twice the scenario\'s bytes (up to 1 GiB) zero-filled before the timer, as the limit row\'s file; group commit, fsync: "commit"',
  durability: 'fdatasync before each append resolves: survives power loss',
  async setup(context) {
    const directoryOf = (name: string) => join(context.directory, name);
    const session = eventLogSession({
      open: (name, scenario) =>
        openPartitionEventLog(
          createFileStorage({ directory: directoryOf(name), fsync: 'commit', preallocate: 'zero-fill', segmentBytes: zeroFillSegmentBytes(scenario) }),
          name,
        ),
    });
    return {
      async run(scenario) {
        const measured = await session.run(scenario);
        if (scenario.kind !== 'append' || !('events' in measured)) return measured;
        // The session names each scenario's partition after the scenario.
        const segments = (await readdir(directoryOf(scenario.id))).filter((n) => n.endsWith('.seg'));
        if (segments.length === 1) return measured;
        const note = `${segments.length} segments: the run went past half of its segment, and zero-filling the next one overlapped it`;
        return { ...measured, note: measured.note === undefined ? note : `${measured.note}; ${note}` };
      },
      teardown: () => session.teardown(),
    };
  },
};
