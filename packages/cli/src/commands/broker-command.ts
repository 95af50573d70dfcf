import { resolve } from 'node:path';
import { BROKER_LIMIT_KEYS, HEARTBEAT_KEYS, loadSluiceConfig } from '@sluice/config';
import { createBroker, type BrokerCurveOptions, type MajordomoBroker } from '@sluice/majordomo';
import { UsageError } from '../cli-errors.js';
import { LineWriter, untilAborted, type CliIo } from '../io.js';
import { readKeyListFile, readSecretKeyFile } from '../key-files.js';
import { HEARTBEAT_FLAGS, flagName, givenFlags } from '../limit-flags.js';
import { createLogger, throttled } from '../logger.js';
import type { Logger } from 'pino';

/** Options of `sluice broker`. */
export interface BrokerFlags {
  readonly endpoint: string;
  readonly workerEndpoint?: string;
  /** A sluice.json whose `heartbeats` and `limits.broker` apply (flags win). */
  readonly config?: string;
  readonly heartbeatMs?: number;
  /** The limit flags (`--service-queue-max`, ...), by property name. */
  readonly [limit: string]: unknown;
  readonly curveSecretKeyFile?: string;
  readonly allowClientKeysFile?: string;
  readonly allowWorkerKeysFile?: string;
  readonly verbose: boolean;
  readonly json: boolean;
}

/**
 * `sluice broker`: runs a Majordomo broker until SIGINT / SIGTERM, then closes it and returns
 * (exit 0). The first stdout line is the bound endpoint (the real port when 0 or `*` was
 * asked for); with `--worker-endpoint`, the second is the workers' endpoint.
 */
export async function brokerCommand(flags: BrokerFlags, io: CliIo): Promise<void> {
  const cwd = io.cwd ?? process.cwd();
  const stdout = new LineWriter(io.stdout);
  const stderr = new LineWriter(io.stderr);
  const log = createLogger(io.stderr, { name: 'sluice broker', level: flags.verbose ? 'debug' : 'info' });
  if (flags.curveSecretKeyFile === undefined && (flags.allowClientKeysFile !== undefined || flags.allowWorkerKeysFile !== undefined)) {
    throw new UsageError('allow-lists need CURVE: give --curve-secret-key-file too');
  }
  if (flags.allowWorkerKeysFile !== undefined && flags.workerEndpoint === undefined) {
    throw new UsageError(
      '--allow-worker-keys-file needs --worker-endpoint: on one endpoint the broker cannot tell workers from clients',
    );
  }
  let curve: BrokerCurveOptions | undefined;
  if (flags.curveSecretKeyFile !== undefined) {
    const pair = await readSecretKeyFile(resolve(cwd, flags.curveSecretKeyFile));
    if (pair.warning !== undefined) await stderr.line(pair.warning);
    curve = {
      secretKey: pair.secretKey,
      ...(flags.allowClientKeysFile === undefined
        ? {}
        : { allowedClientKeys: await readKeyListFile(resolve(cwd, flags.allowClientKeysFile)) }),
      ...(flags.allowWorkerKeysFile === undefined
        ? {}
        : { allowedWorkerKeys: await readKeyListFile(resolve(cwd, flags.allowWorkerKeysFile)) }),
    };
  }
  const config = flags.config === undefined ? undefined : await loadSluiceConfig(resolve(cwd, flags.config));
  const heartbeats = { ...config?.heartbeats, ...givenFlags(flags, HEARTBEAT_KEYS, (key) => HEARTBEAT_FLAGS[key as keyof typeof HEARTBEAT_FLAGS]) };
  const limits = { ...config?.limits.broker, ...givenFlags(flags, BROKER_LIMIT_KEYS, flagName) };
  const broker = await createBroker({
    ...definedOnly(limits),
    ...definedOnly({ heartbeatIntervalMs: heartbeats.intervalMs, heartbeatLiveness: heartbeats.liveness, busyTimeoutMs: heartbeats.busyTimeoutMs }),
    endpoint: flags.endpoint,
    ...(flags.workerEndpoint === undefined ? {} : { workerEndpoint: flags.workerEndpoint }),
    ...(curve === undefined ? {} : { curve }),
  });
  try {
    const workerEndpoint = flags.workerEndpoint === undefined ? undefined : broker.workerEndpoint;
    if (flags.json) {
      // The limits and heartbeat settings in force (defaults, then the config, then flags); no keys.
      const { curve: _curve, endpoint: _endpoint, workerEndpoint: _workerEndpoint, ...settings } = broker.options;
      await stdout.json({ event: 'listening', endpoint: broker.endpoint, workerEndpoint, curvePublicKey: broker.curvePublicKey, settings });
    } else {
      await stdout.line(broker.endpoint);
      if (workerEndpoint !== undefined) await stdout.line(workerEndpoint);
    }
    const { curve: _curve, ...options } = broker.options;
    log.info({ endpoint: broker.endpoint, workerEndpoint, options }, describeBroker(broker, curve));
    logEvents(broker, log);
    if (flags.json && flags.verbose) followEvents(broker, stdout);
    await untilAborted(io.signal);
  } finally {
    await broker.close();
  }
  const stats = broker.stats();
  if (flags.json) await stdout.json({ event: 'stopped', stats });
  log.info(
    { stats },
    `sluice broker: stopped (${stats.repliesRouted} replies routed, ${stats.rejectedRequests} requests rejected, ` +
      `${stats.malformedTotal} malformed messages dropped${curve === undefined ? '' : `, ${stats.peersRefused} peers refused`})`,
  );
}

/**
 * The broker's structured log: worker churn and refused peers at info / warn, rejected
 * requests and malformed messages at warn at most once a second (with how many were left
 * out), internal errors at error. With --verbose (level debug) every rejection too.
 */
function logEvents(broker: MajordomoBroker, log: Logger): void {
  broker.on('worker-ready', (e) => log.info({ event: 'worker-ready', ...e }, `worker ${e.identity} ready for "${e.service}"`));
  broker.on('worker-removed', (e) =>
    (e.reason === 'disconnected' || e.reason === 'broker-closed' ? log.info.bind(log) : log.warn.bind(log))(
      { event: 'worker-removed', ...e },
      `worker ${e.identity} of "${e.service}" removed (${e.reason})`,
    ),
  );
  broker.on('worker-refused', (e) => log.warn({ event: 'worker-refused', ...e }, `worker ${e.identity} refused for "${e.service}"`));
  broker.on('peer-refused', (e) =>
    log.warn(
      { event: 'peer-refused', endpoint: e.endpoint, address: e.address, publicKey: e.publicKey, status: e.status },
      `refused ${e.address} with key ${e.publicKey ?? '(none)'} on ${e.endpoint} (${e.status})`,
    ),
  );
  let lastRejected: { service: string; status: string } | undefined;
  const rejectedLine = throttled(1000, (suppressed) =>
    log.warn({ event: 'request-rejected', ...lastRejected, suppressed }, `request to "${lastRejected?.service}" rejected (${lastRejected?.status})${suppressed > 0 ? `; ${suppressed} more since the last line` : ''}`),
  );
  broker.on('request-rejected', (e) => {
    lastRejected = e;
    if (log.isLevelEnabled('debug')) log.debug({ event: 'request-rejected', ...e }, `request to "${e.service}" rejected (${e.status})`);
    else rejectedLine();
  });
  let lastMalformed = '';
  const malformedLine = throttled(1000, (suppressed) =>
    log.warn({ event: 'malformed', reason: lastMalformed, suppressed }, `malformed message dropped (${lastMalformed})${suppressed > 0 ? `; ${suppressed} more since the last line` : ''}`),
  );
  broker.on('malformed', (e) => {
    lastMalformed = e.reason;
    malformedLine();
  });
  broker.on('internal-error', (error) => log.error({ event: 'internal-error', err: error }, 'internal error (a bug: please report it)'));
}

/** One line for people: where it listens and how it is secured. Public keys only. */
function describeBroker(broker: MajordomoBroker, curve: BrokerCurveOptions | undefined): string {
  const parts = [`sluice broker: listening on ${broker.endpoint}`];
  if (broker.options.workerEndpoint !== undefined) parts.push(`workers on ${broker.workerEndpoint}`);
  if (curve === undefined) {
    parts.push('no encryption (plain TCP): use --curve-secret-key-file beyond a trusted network');
  } else {
    parts.push(`CURVE public key ${broker.curvePublicKey ?? ''}`);
    const clients = curve.allowedClientKeys;
    parts.push(
      Array.isArray(clients)
        ? `${clients.length} client key(s) allowed`
        : 'any client key allowed (give --allow-client-keys-file to restrict)',
    );
    if (Array.isArray(curve.allowedWorkerKeys)) parts.push(`${curve.allowedWorkerKeys.length} worker key(s) allowed`);
  }
  return `${parts.join('; ')}. Stop with Ctrl-C.`;
}

/** `--json --verbose`: workers coming and going, peers refused, as JSON events on stdout (besides the log). */
function followEvents(broker: MajordomoBroker, out: LineWriter): void {
  const say = (event: string, detail: Record<string, unknown>, _text: string): void => {
    void out.json({ event, ...detail });
  };
  broker.on('worker-ready', (e) => say('worker-ready', { ...e }, `worker ${e.identity} ready for "${e.service}"`));
  broker.on('worker-removed', (e) => say('worker-removed', { ...e }, `worker ${e.identity} of "${e.service}" removed (${e.reason})`));
  broker.on('worker-refused', (e) => say('worker-refused', { ...e }, `worker ${e.identity} refused for "${e.service}"`));
  broker.on('peer-refused', (e) =>
    say(
      'peer-refused',
      { endpoint: e.endpoint, address: e.address, publicKey: e.publicKey, status: e.status },
      `refused ${e.address} with key ${e.publicKey ?? '(none)'} on ${e.endpoint} (${e.status})`,
    ),
  );
  broker.on('request-rejected', (e) => say('request-rejected', { ...e }, `request to "${e.service}" rejected (${e.status})`));
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== undefined)) as Partial<T>;
}
