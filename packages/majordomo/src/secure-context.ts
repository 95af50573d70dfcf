import { randomBytes } from 'node:crypto';
import * as zmq from 'zeromq';
import { ZapHandler, type ZapDomain } from './zap-handler.js';

/**
 * The ZeroMQ context of every CURVE broker of this package copy, with its one ZAP handler.
 *
 * Why a context of its own: libzmq asks the ZAP handler bound in the *socket's* context, and
 * only one can bind there. Brokers in the global context would compete with each other and
 * with an application's own handler. Why one for all brokers: a zeromq.js context keeps its
 * threads and file descriptors until the process exits, so a context per broker would leak
 * with every broker started. Brokers tell their sockets apart by ZAP domain, each unique.
 */
let context: zmq.Context | undefined;
let handler: ZapHandler | undefined;
/** Starting and stopping the handler are serialised: a broker closing never races one starting. */
let queue: Promise<unknown> = Promise.resolve();
let nextDomain = 0;
const instance = randomBytes(4).toString('hex');

/** The shared context for CURVE sockets (created on first use, kept for the process). */
export function secureContext(): zmq.Context {
  context ??= new zmq.Context();
  return context;
}

/** A ZAP domain no other socket of the context uses. */
export function uniqueZapDomain(role: string): string {
  nextDomain += 1;
  return `sluice-${instance}-${nextDomain}-${role}`;
}

/** Releases the domains registered by {@link registerZapDomains}. */
export type ZapLease = { release(): Promise<void> };

/**
 * Answers ZAP for `domains` from now on, binding the handler first if no broker has yet. The
 * handler is closed again when the last lease is released.
 */
export function registerZapDomains(domains: readonly ZapDomain[]): Promise<ZapLease> {
  return serialised(async () => {
    if (handler === undefined) {
      const starting = new ZapHandler(secureContext());
      try {
        await starting.start();
      } catch (error) {
        await starting.close();
        throw error;
      }
      handler = starting;
    }
    for (const domain of domains) handler.add(domain);
    let released = false;
    return {
      release: () =>
        serialised(async () => {
          if (released || handler === undefined) return;
          released = true;
          for (const domain of domains) handler.remove(domain.domain);
          if (handler.size === 0) {
            const stopping = handler;
            handler = undefined;
            await stopping.close();
          }
        }),
    };
  });
}

function serialised<T>(work: () => Promise<T>): Promise<T> {
  const result = queue.then(work);
  queue = result.catch(() => undefined);
  return result;
}
