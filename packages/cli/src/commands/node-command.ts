import { resolve } from 'node:path';
import { NODE_LIMIT_KEYS, loadSluiceConfig } from '@sluice/config';
import type { CurveOptions } from '@sluice/majordomo';
import { locationFactory, startNode } from '@sluice/node';
import { createFileStorage } from '@sluice/store-file';
import { UsageError } from '../cli-errors.js';
import { LineWriter, untilAborted, type CliIo } from '../io.js';
import { readPublicKey, readSecretKeyFile } from '../key-files.js';
import { flagName, givenFlags } from '../limit-flags.js';

/** Options of `sluice node`. */
export interface NodeFlags {
  readonly config: string;
  readonly node?: string;
  readonly heartbeatMs?: number;
  /** The limit flags (`--concurrency`, `--page-bytes-max`, ...), by property name. */
  readonly [limit: string]: unknown;
  readonly curveServerKey?: string;
  readonly curveSecretKeyFile?: string;
  readonly json: boolean;
}

/**
 * `sluice node`: opens the partitions the config gives this node and serves them through the
 * config's brokers until SIGINT / SIGTERM; then drains, closes the partitions and returns
 * (exit 0). The first stdout line names the node and its partitions.
 */
export async function nodeCommand(flags: NodeFlags, io: CliIo): Promise<void> {
  const cwd = io.cwd ?? process.cwd();
  const stdout = new LineWriter(io.stdout);
  const stderr = new LineWriter(io.stderr);
  if ((flags.curveServerKey === undefined) !== (flags.curveSecretKeyFile === undefined)) {
    throw new UsageError('CURVE needs both --curve-server-key and --curve-secret-key-file');
  }
  let curve: CurveOptions | undefined;
  if (flags.curveServerKey !== undefined && flags.curveSecretKeyFile !== undefined) {
    const pair = await readSecretKeyFile(resolve(cwd, flags.curveSecretKeyFile));
    if (pair.warning !== undefined) await stderr.line(pair.warning);
    curve = { serverPublicKey: await readPublicKey(flags.curveServerKey, cwd), secretKey: pair.secretKey, publicKey: pair.publicKey };
  }
  const config = await loadSluiceConfig(resolve(cwd, flags.config));
  const node = await startNode({
    config,
    // File storage ships with the CLI; lmdb / azure locations load @sluice/store-lmdb /
    // @sluice/store-azure when installed (optional peer dependencies of @sluice/node).
    locations: { file: locationFactory('file', createFileStorage) },
    ...(flags.node === undefined ? {} : { nodeName: flags.node }),
    // startNode takes the config's heartbeats and limits.node; flags win.
    ...givenFlags(flags, NODE_LIMIT_KEYS, flagName),
    ...(flags.heartbeatMs === undefined ? {} : { heartbeatIntervalMs: flags.heartbeatMs }),
    ...(typeof flags.heartbeatLiveness === 'number' ? { heartbeatLiveness: flags.heartbeatLiveness } : {}),
    ...(curve === undefined ? {} : { worker: { curve } }),
  });
  try {
    const partitions = [...node.partitions.keys()];
    if (flags.json) {
      await stdout.json({ event: 'started', node: node.name, partitions, brokers: config.brokers });
    } else {
      await stdout.line(`node ${node.name}: ${partitions.join(', ')}`);
    }
    await stderr.line(
      `sluice node: "${node.name}" serves ${partitions.length} partition(s) via ${config.brokers.join(', ')}. Stop with Ctrl-C.`,
    );
    await untilAborted(io.signal);
  } finally {
    await node.close();
  }
  if (flags.json) await stdout.json({ event: 'stopped', node: node.name });
  await stderr.line(`sluice node: "${node.name}" stopped; its partitions are closed`);
}
