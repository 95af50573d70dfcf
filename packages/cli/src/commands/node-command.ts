import { resolve } from 'node:path';
import { NODE_LIMIT_KEYS, loadSluiceConfig } from '@sluice/config';
import type { CurveOptions } from '@sluice/majordomo';
import { locationFactory, startNode, type StoreNode } from '@sluice/node';
import type { Logger } from 'pino';
import { createLogger } from '../logger.js';
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
  const log = createLogger(io.stderr, { name: 'sluice node' });
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
    // SIGINT / SIGTERM while partitions open (or preallocate) stops the start at once.
    signal: io.signal,
  });
  try {
    const partitions = [...node.partitions.keys()];
    if (flags.json) {
      await stdout.json({ event: 'started', node: node.name, partitions, brokers: config.brokers });
    } else {
      await stdout.line(`node ${node.name}: ${partitions.join(', ')}`);
    }
    for (const [name, partition] of node.partitions) {
      const { recovery } = partition;
      const lost = recovery.droppedBytes > 0 || recovery.droppedSeqs > 0;
      const dropped = lost
        ? `; recovery dropped ${recovery.droppedSeqs} never-durable seq(s) and ${recovery.droppedBytes} bytes of torn tail (${recovery.droppedReason ?? 'unknown reason'})`
        : '';
      (lost ? log.warn.bind(log) : log.info.bind(log))(
        { event: 'partition-opened', partition: name, lastSeq: partition.lastSeq, recovery },
        `partition "${name}" opened at seq ${partition.lastSeq}${dropped}`,
      );
    }
    logEvents(node, log);
    log.info(
      { node: node.name, partitions, brokers: config.brokers },
      `sluice node: "${node.name}" serves ${partitions.length} partition(s) via ${config.brokers.join(', ')}. Stop with Ctrl-C.`,
    );
    await untilAborted(io.signal);
  } finally {
    await node.close();
  }
  if (flags.json) await stdout.json({ event: 'stopped', node: node.name });
  log.info({ node: node.name, stats: node.stats() }, `sluice node: "${node.name}" stopped; its partitions are closed`);
}

/** The node's structured log: partition faults and reopens, worker churn, shipping alerts, mirror repairs. */
function logEvents(node: StoreNode, log: Logger): void {
  node.on('partition-faulted', (e) =>
    log.error(
      { event: 'partition-faulted', partition: e.partition, err: e.error, nextAttemptInMs: e.nextAttemptInMs },
      `partition "${e.partition}" faulted (a write or sync failed): appends are refused; ` +
        (e.nextAttemptInMs === undefined ? 'reopening is off (reopenAttemptsMax 0)' : `reopening in ${e.nextAttemptInMs} ms`),
    ),
  );
  node.on('partition-reopened', (e) =>
    log.info(
      { event: 'partition-reopened', ...e },
      `partition "${e.partition}" reopened at seq ${e.lastSeq} (attempt ${e.attempt}; recovery dropped ${e.recovery.droppedSeqs} never-durable seq(s) and ${e.recovery.droppedBytes} bytes${e.recovery.droppedReason === undefined ? '' : `: ${e.recovery.droppedReason}`})`,
    ),
  );
  node.on('partition-reopen-failed', (e) =>
    log.error(
      { event: 'partition-reopen-failed', partition: e.partition, attempt: e.attempt, err: e.error, nextAttemptInMs: e.nextAttemptInMs },
      `partition "${e.partition}" did not reopen (attempt ${e.attempt}): ` +
        (e.nextAttemptInMs === undefined ? 'giving up; it stays faulted until the node restarts' : `next attempt in ${e.nextAttemptInMs} ms`),
    ),
  );
  node.on('worker-connected', (e) => log.debug({ event: 'worker-connected', ...e }, `partition "${e.partition}": connection ${e.session} registered with ${e.broker}`));
  node.on('worker-reconnecting', (e) =>
    log.warn({ event: 'worker-reconnecting', ...e }, `partition "${e.partition}": connection ${e.session} to ${e.broker} lost (${e.reason}); reconnecting`),
  );
  node.on('worker-error', (e) => log.error({ event: 'worker-error', partition: e.partition, broker: e.broker, err: e.error }, 'handler error (a bug: please report it)'));
  node.on('shipping-alert', ({ partition, alert }) => {
    const level = alert.kind === 'target-recovered' || alert.kind === 'lag-cleared' ? 'info' : alert.kind === 'diverged' || alert.kind === 'ahead' ? 'error' : 'warn';
    log[level](
      { event: 'shipping-alert', partition, kind: alert.kind, target: alert.target, location: alert.location, lagSeqs: alert.lagSeqs, lagMs: alert.lagMs, err: alert.error },
      `partition "${partition}" shipping to ${alert.target}: ${alert.message}`,
    );
  });
  node.on('mirror-repair', ({ partition, repair }) =>
    log.warn(
      { event: 'mirror-repair', partition, ...repair },
      `partition "${partition}": ${repair.action} seqs ${repair.fromSeq}-${repair.toSeq} on location ${repair.location} (${repair.reason})`,
    ),
  );
}
