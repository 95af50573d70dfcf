import { createPrivateKey, createPublicKey } from 'node:crypto';
import * as zmq from 'zeromq';
import type { OptionProblems } from './validate.js';
import { decodeZ85, encodeZ85 } from './z85.js';

/** A CURVE key pair as Z85 text (40 characters each). Keep `secretKey` out of logs and repositories. */
export interface CurveKeyPair {
  readonly publicKey: string;
  readonly secretKey: string;
}

/**
 * Which CURVE public keys (Z85) may connect: a list, or a function asked once per connection
 * handshake (it may be async; throwing or rejecting refuses the peer).
 */
export type CurveKeyPolicy = readonly string[] | ((publicKey: string) => boolean | Promise<boolean>);

/**
 * CURVE security of a broker: every connection is encrypted and the broker is authenticated
 * by its key pair; peers are authenticated by their public keys through ZAP (RFC 27).
 */
export interface BrokerCurveOptions {
  /**
   * The broker's secret key (Z85). Never logged, never in an error message, not kept in
   * `broker.options`.
   */
  readonly secretKey: string;
  /**
   * The broker's public key (Z85), given to clients and workers as `serverPublicKey`. Checked
   * against `secretKey` when given.
   * @default derived from secretKey
   */
  readonly publicKey?: string;
  /**
   * Public keys allowed to connect to `endpoint`: clients, and workers too unless the broker
   * has a separate `workerEndpoint`. Without a list, any peer that knows the broker's public
   * key may connect (encrypted, but anonymous).
   * @default undefined (any key)
   */
  readonly allowedClientKeys?: CurveKeyPolicy;
  /**
   * Public keys allowed to register workers on `workerEndpoint` (needs `workerEndpoint`: on one
   * socket the broker cannot tell a worker's key from a client's).
   * @default allowedClientKeys
   */
  readonly allowedWorkerKeys?: CurveKeyPolicy;
}

/** CURVE security of a client or a worker connecting to a CURVE broker. */
export interface CurveOptions {
  /** The broker's public key (Z85). */
  readonly serverPublicKey: string;
  /** This peer's secret key (Z85). Never logged, never in an error message, not kept in `options`. */
  readonly secretKey: string;
  /**
   * This peer's public key (Z85): the key the broker's allow-list must hold. Checked against
   * `secretKey` when given.
   * @default derived from secretKey
   */
  readonly publicKey?: string;
}

/** {@link BrokerCurveOptions} as kept in `broker.options`: without the secret key. */
export interface ResolvedBrokerCurve {
  readonly publicKey: string;
  readonly allowedClientKeys: CurveKeyPolicy | undefined;
  readonly allowedWorkerKeys: CurveKeyPolicy | undefined;
}

/** {@link CurveOptions} as kept in `options`: without the secret key. */
export interface ResolvedCurve {
  readonly serverPublicKey: string;
  readonly publicKey: string;
}

/** Socket options that switch a zeromq socket to CURVE. Internal: holds a secret key. */
export type CurveSocketOptions =
  | { readonly curveServer: true; readonly curveSecretKey: string }
  | { readonly curveServerKey: string; readonly curvePublicKey: string; readonly curveSecretKey: string };

const CURVE_KEY_CHARS = 40;
/** PKCS#8 DER prefix of a raw X25519 private key (RFC 8410). */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/**
 * A new CURVE key pair (Z85), from libzmq. Store the secret key where only its owner reads it.
 *
 * @example
 * const { publicKey, secretKey } = generateCurveKeyPair();
 */
export function generateCurveKeyPair(): CurveKeyPair {
  assertCurveAvailable();
  const { publicKey, secretKey } = zmq.curveKeyPair();
  return { publicKey, secretKey };
}

/**
 * The public key (Z85) that belongs to a CURVE secret key (Z85); `undefined` when the text
 * is not a CURVE key. CURVE keys are X25519 keys, so Node's crypto derives it.
 */
export function deriveCurvePublicKey(secretKey: string): string | undefined {
  if (!isCurveKey(secretKey)) return undefined;
  const raw = decodeZ85(secretKey) as Buffer;
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return encodeZ85(spki.subarray(spki.length - 32));
}

/** True for 40 characters of Z85: the text form of a 32-byte CURVE key. */
export function isCurveKey(value: unknown): value is string {
  return typeof value === 'string' && value.length === CURVE_KEY_CHARS && decodeZ85(value) !== undefined;
}

/** Whether `policy` lets `publicKey` connect (no policy: every key). */
export async function curvePolicyAllows(policy: CurveKeyPolicy | undefined, publicKey: string): Promise<boolean> {
  if (policy === undefined) return true;
  if (typeof policy === 'function') return (await policy(publicKey)) === true;
  return policy.includes(publicKey);
}

/** Throws when this zeromq build lacks CURVE (it never does with the prebuilt binaries). */
export function assertCurveAvailable(): void {
  if (!zmq.capability.curve) {
    throw new Error('[sluice/majordomo] this zeromq build has no CURVE support: install the prebuilt zeromq package');
  }
}

/** Validates broker CURVE options; returns them without the secret. Internal. */
export function checkBrokerCurve(
  check: OptionProblems,
  curve: BrokerCurveOptions | undefined,
  endpoints: { readonly endpoint: unknown; readonly workerEndpoint: unknown },
): ResolvedBrokerCurve | undefined {
  if (curve === undefined) return undefined;
  if (typeof curve !== 'object' || curve === null) {
    check.check(false, 'curve must be an object { secretKey, publicKey?, allowedClientKeys?, allowedWorkerKeys? }');
    return undefined;
  }
  const publicKey = checkKeyPair(check, 'curve', curve.secretKey, curve.publicKey);
  checkPolicy(check, 'curve.allowedClientKeys', curve.allowedClientKeys);
  checkPolicy(check, 'curve.allowedWorkerKeys', curve.allowedWorkerKeys);
  check.check(
    curve.allowedWorkerKeys === undefined || endpoints.workerEndpoint !== undefined,
    'curve.allowedWorkerKeys needs workerEndpoint: on one socket the broker cannot tell a worker ' +
      "from a client, so set workerEndpoint, or put the workers' keys in allowedClientKeys",
  );
  for (const [name, value] of Object.entries(endpoints)) {
    check.check(
      !(typeof value === 'string' && value.startsWith('inproc://')),
      `${name} must be tcp:// or ipc:// with curve: CURVE secures connections between processes, ` +
        'and CURVE sockets run in a ZeroMQ context of their own, which inproc peers cannot reach',
    );
  }
  return {
    publicKey: publicKey ?? '',
    allowedClientKeys: freezePolicy(curve.allowedClientKeys),
    allowedWorkerKeys: freezePolicy(curve.allowedWorkerKeys ?? curve.allowedClientKeys),
  };
}

/** Validates client or worker CURVE options; returns them without the secret. Internal. */
export function checkPeerCurve(check: OptionProblems, curve: CurveOptions | undefined): ResolvedCurve | undefined {
  if (curve === undefined) return undefined;
  if (typeof curve !== 'object' || curve === null) {
    check.check(false, 'curve must be an object { serverPublicKey, secretKey, publicKey? }');
    return undefined;
  }
  const publicKey = checkKeyPair(check, 'curve', curve.secretKey, curve.publicKey);
  check.check(
    isCurveKey(curve.serverPublicKey),
    `curve.serverPublicKey must be the broker's public key, 40 characters of Z85 (got ${describeKey(curve.serverPublicKey)})`,
  );
  return { serverPublicKey: curve.serverPublicKey, publicKey: publicKey ?? '' };
}

/** Socket options of a CURVE client or worker socket. Internal. */
export function clientSocketCurve(curve: CurveOptions | undefined, resolved: ResolvedCurve | undefined): CurveSocketOptions | undefined {
  if (curve === undefined || resolved === undefined) return undefined;
  return { curveServerKey: resolved.serverPublicKey, curvePublicKey: resolved.publicKey, curveSecretKey: curve.secretKey };
}

/** Checks a key pair without ever echoing the secret; returns the public key. */
function checkKeyPair(check: OptionProblems, prefix: string, secretKey: unknown, publicKey: unknown): string | undefined {
  if (!isCurveKey(secretKey)) {
    check.check(
      false,
      `${prefix}.secretKey must be a CURVE secret key, 40 characters of Z85 (got ${describeKey(secretKey)}); ` +
        'generate a pair with generateCurveKeyPair() or `sluice keygen`',
    );
    if (publicKey !== undefined && !isCurveKey(publicKey)) {
      check.check(false, `${prefix}.publicKey must be 40 characters of Z85 (got ${describeKey(publicKey)})`);
    }
    return undefined;
  }
  const derived = deriveCurvePublicKey(secretKey) as string;
  if (publicKey === undefined) return derived;
  if (!isCurveKey(publicKey)) {
    check.check(false, `${prefix}.publicKey must be 40 characters of Z85 (got ${describeKey(publicKey)})`);
    return undefined;
  }
  check.check(
    publicKey === derived,
    `${prefix}.publicKey does not belong to ${prefix}.secretKey: use the two keys of one pair, ` +
      'or leave publicKey out to derive it',
  );
  return derived;
}

function checkPolicy(check: OptionProblems, name: string, policy: unknown): void {
  if (policy === undefined || typeof policy === 'function') return;
  if (!Array.isArray(policy)) {
    check.check(false, `${name} must be an array of public keys (Z85) or a function (publicKey) => boolean`);
    return;
  }
  const bad = policy.map((key, index) => (isCurveKey(key) ? -1 : index)).filter((index) => index >= 0);
  check.check(
    bad.length === 0,
    `${name} must hold CURVE public keys, 40 characters of Z85 each; entries ${bad.slice(0, 10).join(', ')} are not`,
  );
}

function freezePolicy(policy: CurveKeyPolicy | undefined): CurveKeyPolicy | undefined {
  return Array.isArray(policy) ? Object.freeze([...policy]) : policy;
}

/**
 * Describes a would-be key by its shape only: a secret key pasted into a public key's field
 * must not end up in an error message either.
 */
function describeKey(value: unknown): string {
  if (typeof value !== 'string') return value === undefined ? 'nothing' : typeof value;
  return `a string of ${value.length} characters`;
}
