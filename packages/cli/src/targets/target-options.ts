import { resolve } from 'node:path';
import type { CurveOptions } from '@sluice/majordomo';
import { Option, type Command } from 'commander';
import { UsageError } from '../cli-errors.js';
import { readPublicKey, readSecretKeyFile } from '../key-files.js';
import { positiveInteger } from '../parse-options.js';
import type { ClusterConnection } from './cluster-target.js';

/** The options that say which partition a command works on. */
export interface TargetFlags {
  readonly path?: string;
  readonly config?: string;
  readonly broker?: string[];
  readonly partition?: string;
  readonly timeoutMs?: number;
  readonly curveServerKey?: string;
  readonly curveSecretKeyFile?: string;
}

/** A local partition folder, or a cluster. */
export type Target =
  | { readonly kind: 'local'; readonly directory: string }
  | { readonly kind: 'cluster'; readonly connection: ClusterConnection; readonly warnings: readonly string[] };

/** Adds `--path`, `--config`, `--broker`, `--partition`, `--timeout-ms` and the CURVE client options. */
export function addTargetOptions(command: Command): Command {
  return command
    .addOption(new Option('--path <dir>', 'a local partition folder (file storage)').conflicts(['config', 'broker']))
    .addOption(new Option('--config <file>', 'a cluster config (sluice.json): its brokers and stream routing'))
    .addOption(
      new Option('--broker <endpoint...>', 'broker endpoint(s) of a cluster, in fail-over order (needs --partition)'),
    )
    .option('--partition <name>', 'the partition in the cluster')
    .addOption(
      new Option('--timeout-ms <ms>', 'cluster: wait this long for each reply before failing over (default: the config\'s limits.client.timeoutMs, else 5000)')
        .argParser(positiveInteger('--timeout-ms')),
    )
    .option('--curve-server-key <key|file>', "cluster over CURVE: the broker's public key, or a file holding it")
    .option('--curve-secret-key-file <file>', "cluster over CURVE: this client's secret key file (see `sluice keygen`)");
}

/** Checks the target options and reads key files. */
export async function resolveTarget(flags: TargetFlags, cwd: string): Promise<Target> {
  const cluster = flags.config !== undefined || flags.broker !== undefined;
  if (flags.path === undefined && !cluster) {
    throw new UsageError('say where the partition is: --path <dir> (local) or --config <file> / --broker <endpoint> (cluster)');
  }
  if (flags.path !== undefined) {
    const clusterOnly = (['partition', 'curveServerKey', 'curveSecretKeyFile'] as const).filter((key) => flags[key] !== undefined);
    if (clusterOnly.length > 0) {
      throw new UsageError(`--path is a local partition: ${clusterOnly.map(flagName).join(', ')} only apply to a cluster`);
    }
    return { kind: 'local', directory: resolve(cwd, flags.path) };
  }
  if ((flags.curveServerKey === undefined) !== (flags.curveSecretKeyFile === undefined)) {
    throw new UsageError('CURVE needs both --curve-server-key and --curve-secret-key-file');
  }
  const warnings: string[] = [];
  let curve: CurveOptions | undefined;
  if (flags.curveServerKey !== undefined && flags.curveSecretKeyFile !== undefined) {
    const pair = await readSecretKeyFile(resolve(cwd, flags.curveSecretKeyFile));
    if (pair.warning !== undefined) warnings.push(pair.warning);
    const serverPublicKey = await readPublicKey(flags.curveServerKey, cwd);
    curve = { serverPublicKey, secretKey: pair.secretKey, publicKey: pair.publicKey };
  }
  return {
    kind: 'cluster',
    warnings,
    connection: {
      configPath: flags.config === undefined ? undefined : resolve(cwd, flags.config),
      brokers: flags.broker,
      partition: flags.partition,
      timeoutMs: flags.timeoutMs,
      curve,
    },
  };
}

function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
}
