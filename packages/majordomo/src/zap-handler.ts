import * as zmq from 'zeromq';
import { curvePolicyAllows, type CurveKeyPolicy } from './curve.js';
import { Outbox } from './outbox.js';
import { encodeZ85 } from './z85.js';

/** The endpoint libzmq sends ZAP requests to, in the context of the authenticating socket (RFC 27). */
export const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';
const ZAP_VERSION = '1.0';
/** Frames before the credentials: routing id, empty, version, request id, domain, address, identity, mechanism. */
const ZAP_HEADER_FRAMES = 8;
const ZAP_REQUESTS_IN_FLIGHT_MAX = 1000;
/** Binding the ZAP endpoint is retried this many times, this far apart, while a closed handler releases it. */
const BIND_ATTEMPTS_MAX = 200;
const BIND_RETRY_DELAY_MS = 5;

/** One ZAP answer: which peer (by address and public key) asked, and whether it was let in. */
export interface ZapDecision {
  /** The ZAP domain of the socket it connected to. */
  readonly domain: string;
  /** The peer's IP address, as libzmq reports it. */
  readonly address: string;
  /** The peer's CURVE public key (Z85), when it offered one. */
  readonly publicKey: string | undefined;
  readonly allowed: boolean;
  /** RFC 27 status code sent back: 200 allowed, 400 refused, 500 the request or policy failed. */
  readonly status: '200' | '400' | '500';
  /** Set when the policy function threw or rejected. */
  readonly error?: unknown;
}

/** Who may connect to the sockets of one ZAP domain, and who hears the decisions. */
export interface ZapDomain {
  readonly domain: string;
  /** No policy: every CURVE key. */
  readonly policy: CurveKeyPolicy | undefined;
  readonly decided: (decision: ZapDecision) => void;
}

interface Registered {
  /** Array policies as sets: one lookup per handshake, however long the list. */
  readonly policy: CurveKeyPolicy | ReadonlySet<string> | undefined;
  readonly decided: (decision: ZapDecision) => void;
}

/**
 * A ZAP handler (ZeroMQ RFC 27) for CURVE: a ROUTER bound to `inproc://zeromq.zap.01` in one
 * ZeroMQ context, answering each handshake of that context's sockets by the socket's ZAP
 * domain: 200 when the peer's public key passes the domain's policy, 400 otherwise (also for
 * other mechanisms, unknown domains and malformed requests), 500 when a policy function
 * fails. Internal: see `secure-context.ts`.
 */
export class ZapHandler {
  private readonly socket: zmq.Router;
  private readonly outbox: Outbox;
  private readonly domains = new Map<string, Registered>();
  private loop: Promise<void> | undefined;
  private inFlight = 0;

  constructor(context: zmq.Context) {
    this.socket = new zmq.Router({ context, linger: 0 });
    this.outbox = new Outbox(this.socket, ZAP_REQUESTS_IN_FLIGHT_MAX);
  }

  /**
   * Binds the ZAP endpoint; must happen before the secured sockets bind (they fail closed
   * until then). A handler closed a moment ago may still hold the endpoint (libzmq releases
   * inproc endpoints asynchronously), so "address in use" is retried for a while.
   */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.socket.bind(ZAP_ENDPOINT);
        break;
      } catch (error) {
        if ((error as { code?: unknown }).code !== 'EADDRINUSE' || attempt >= BIND_ATTEMPTS_MAX) throw error;
        await new Promise((resolve) => setTimeout(resolve, BIND_RETRY_DELAY_MS));
      }
    }
    this.loop = this.receiveLoop();
  }

  /** Number of domains answered. */
  get size(): number {
    return this.domains.size;
  }

  add(domain: ZapDomain): void {
    const policy = Array.isArray(domain.policy) ? new Set<string>(domain.policy) : domain.policy;
    this.domains.set(domain.domain, { policy, decided: domain.decided });
  }

  /** Handshakes for the domain are refused from now on. */
  remove(domain: string): void {
    this.domains.delete(domain);
  }

  async close(): Promise<void> {
    this.socket.close();
    await this.loop;
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        // A slow policy must not hold up other handshakes; the in-flight bound keeps a flood
        // of handshakes from growing memory (the peers beyond it are refused).
        if (this.inFlight >= ZAP_REQUESTS_IN_FLIGHT_MAX) {
          this.reply(frames, '500', 'too many handshakes at once', '');
          continue;
        }
        this.inFlight += 1;
        void this.handle(frames).finally(() => {
          this.inFlight -= 1;
        });
      }
    } catch {
      // Closed during a receive.
    }
  }

  private async handle(frames: Buffer[]): Promise<void> {
    if (frames.length < ZAP_HEADER_FRAMES || frames[1].length !== 0) return; // not ZAP: no request id to answer
    const version = frames[2].toString('latin1');
    const domain = frames[4].toString('utf8');
    const address = frames[5].toString('utf8');
    const mechanism = frames[7].toString('latin1');
    const credentials = frames.slice(ZAP_HEADER_FRAMES);
    const registered = this.domains.get(domain);
    const decide = (status: '200' | '400' | '500', text: string, publicKey?: string, error?: unknown): void => {
      if (this.socket.closed) return;
      this.reply(frames, status, text, status === '200' && publicKey !== undefined ? publicKey : '');
      registered?.decided({ domain, address, publicKey, allowed: status === '200', status, ...(error === undefined ? {} : { error }) });
    };
    if (version !== ZAP_VERSION) return decide('500', `ZAP version ${ZAP_VERSION} expected`);
    if (mechanism !== 'CURVE' || credentials.length !== 1 || credentials[0].length !== 32) {
      return decide('400', 'CURVE with a 32-byte public key is required');
    }
    const publicKey = encodeZ85(credentials[0]);
    if (registered === undefined) return decide('400', 'unknown ZAP domain', publicKey);
    try {
      const { policy } = registered;
      const allowed = policy instanceof Set ? policy.has(publicKey) : await curvePolicyAllows(policy as CurveKeyPolicy | undefined, publicKey);
      decide(allowed ? '200' : '400', allowed ? 'OK' : 'public key not allowed', publicKey);
    } catch (error) {
      decide('500', 'key policy failed', publicKey, error);
    }
  }

  private reply(frames: Buffer[], status: '200' | '400' | '500', text: string, userId: string): void {
    if (frames.length < 4) return;
    this.outbox.push([
      frames[0],
      Buffer.alloc(0),
      Buffer.from(ZAP_VERSION, 'latin1'),
      frames[3],
      Buffer.from(status, 'latin1'),
      Buffer.from(text, 'utf8'),
      Buffer.from(userId, 'latin1'),
      Buffer.alloc(0),
    ]);
  }
}
