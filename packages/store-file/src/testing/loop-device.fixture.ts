/**
 * Test helper: real ext4 filesystems on loop devices, for power-loss and I/O-fault tests.
 *
 * A loop device over a sparse image file is a real block device under a real filesystem, so
 * what the kernel has not written back yet is really missing from a copy of the image taken
 * right after the writer is killed (the copy is what the disk held when the power went).
 * Needs root and util-linux (`losetup`, `mount`, `umount`), e2fsprogs (`mkfs.ext4`,
 * `e2fsck`) and coreutils (`cp`). Every device and mount this module creates is recorded and
 * released by {@link releaseAll}, which tests call from `afterAll` so a failed test never
 * leaves a device or a mount behind.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdir, open, rm } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** An ext4 filesystem on a loop device, mounted. */
export interface LoopFilesystem {
  /** The image file behind the loop device. */
  readonly image: string;
  /** The loop device, e.g. `/dev/loop3`. */
  readonly device: string;
  /** Where the filesystem is mounted. */
  readonly mountPoint: string;
}

const attached = new Set<LoopFilesystem>();

/**
 * Throws a clear error unless every tool is on the PATH and the process is root: a fault test
 * must fail when it cannot run, never pass without having run.
 */
export async function requireTools(tools: readonly string[], why: string): Promise<void> {
  const missing: string[] = [];
  for (const tool of tools) {
    try {
      await run('sh', ['-c', `command -v ${tool}`]);
    } catch {
      missing.push(tool);
    }
  }
  if (missing.length > 0) {
    throw new Error(
      `[sluice/store-file tests] ${why} needs ${missing.join(', ')} on the PATH: ` +
        `install them (Debian: apt-get install -y fiu-utils e2fsprogs util-linux mount; see .ci/run)`,
    );
  }
  if (process.getuid?.() !== 0) throw new Error(`[sluice/store-file tests] ${why} needs root (loop devices, mount): run it as root, as CI does`);
}

/** Runs a command, putting its stderr into the error when it fails. */
export async function sh(command: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run(command, args, { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`, { cause: error });
  }
}

/** Creates a sparse image of `sizeBytes`, formats it as ext4 and mounts it at `mountPoint`. */
export async function createLoopFilesystem(image: string, mountPoint: string, sizeBytes: number): Promise<LoopFilesystem> {
  const file = await open(image, 'w');
  await file.truncate(sizeBytes);
  await file.close();
  // No lazy init: background zeroing of inode tables would write to the image during a test.
  await sh('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image]);
  return attachImage(image, mountPoint, { fsck: false });
}

/**
 * Attaches `image` to a free loop device, optionally checks it (`e2fsck -fy`, which also replays
 * the journal), and mounts it read-write at `mountPoint`. Returns the fsck exit status (0 =
 * clean, 1 = errors corrected) with the filesystem.
 */
export async function attachImage(image: string, mountPoint: string, options: { fsck: boolean }): Promise<LoopFilesystem & { fsckStatus: number }> {
  const device = (await sh('losetup', ['--find', '--show', image])).trim();
  // The very object recorded in `attached` is returned: detach() finds it by identity.
  const fs = { image, device, mountPoint, fsckStatus: 0 };
  attached.add(fs);
  try {
    if (options.fsck) {
      try {
        await run('e2fsck', ['-fy', device]);
      } catch (error) {
        const e = error as { code?: number; stdout?: string; stderr?: string };
        fs.fsckStatus = typeof e.code === 'number' ? e.code : -1;
        // 1 = errors corrected (a replayed journal counts), 2 = corrected, reboot advised: both usable.
        if (fs.fsckStatus !== 1 && fs.fsckStatus !== 2) throw new Error(`e2fsck -fy ${image} exited ${fs.fsckStatus}: ${e.stdout ?? ''}${e.stderr ?? ''}`);
      }
    }
    await mkdir(mountPoint, { recursive: true });
    await sh('mount', ['-t', 'ext4', device, mountPoint]);
  } catch (error) {
    await detach(fs);
    throw error;
  }
  return fs;
}

/**
 * Copies the image as it is now (`cp --sparse=always`): dirty pages of the filesystem on it
 * that the kernel has not written back are not in the copy, as after a power failure.
 */
export async function snapshotImage(image: string, copy: string): Promise<void> {
  await sh('cp', ['--sparse=always', image, copy]);
}

/** Unmounts and detaches a filesystem from this module. Safe to call twice. */
export async function detach(fs: LoopFilesystem): Promise<void> {
  if (!attached.delete(fs)) return;
  const problems: string[] = [];
  const mounts = await sh('cat', ['/proc/mounts']).catch(() => '');
  if (mounts.split('\n').some((line) => line.split(' ')[1] === fs.mountPoint)) {
    await sh('umount', [fs.mountPoint]).catch((error: Error) => problems.push(error.message));
  }
  await sh('losetup', ['-d', fs.device]).catch((error: Error) => problems.push(error.message));
  if (problems.length > 0) throw new Error(`[sluice/store-file tests] could not release ${fs.device} at ${fs.mountPoint}: ${problems.join('; ')}`);
}

/** Releases every device and mount this module still holds (for `afterAll`), then removes `scratch`. */
export async function releaseAll(scratch?: string): Promise<void> {
  const problems: string[] = [];
  for (const fs of [...attached].reverse()) await detach(fs).catch((error: Error) => problems.push(error.message));
  if (scratch !== undefined && problems.length === 0) await rm(scratch, { recursive: true, force: true });
  if (problems.length > 0) throw new Error(problems.join('\n'));
}

/** Reads an integer sysctl under /proc/sys/vm. */
export async function readVmSetting(name: string): Promise<number> {
  return Number((await sh('cat', [`/proc/sys/vm/${name}`])).trim());
}

/**
 * Reads a writer child's `ack <id> <firstSeq> <lastSeq>` lines until `ackTarget` commits are
 * acknowledged, SIGKILLs it, and copies `image` as soon as it is gone (so the copy is of one
 * moment, not of a dying process). Every ack the writer printed, also after the kill was sent,
 * came before its death and so before the copy. Resolves with id → seqs once the copy is made;
 * rejects if the writer exits before it is killed.
 */
export function killAtAcksAndSnapshot(
  child: ChildProcess,
  ackTarget: number,
  image: string,
  copy: string,
): Promise<Map<string, readonly [number, number]>> {
  return new Promise((resolve, reject) => {
    const acked = new Map<string, readonly [number, number]>();
    let buffered = '';
    let stderr = '';
    let killed = false;
    let copied: Promise<void> | undefined;
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdout?.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const [verb, id, a, b] = buffered.slice(0, nl).split(' ');
        buffered = buffered.slice(nl + 1);
        if (verb === 'ack') acked.set(id, [Number(a), Number(b)]);
      }
      if (!killed && acked.size >= ackTarget) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      if (signal === 'SIGKILL') copied = snapshotImage(image, copy);
    });
    child.on('close', (code, signal) => {
      if (copied === undefined) reject(new Error(`writer exited with ${code ?? signal} before being killed: ${stderr}`));
      else copied.then(() => resolve(acked), reject);
    });
  });
}
