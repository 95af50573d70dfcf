import type * as zmq from 'zeromq';

/**
 * Why a connection's security handshake failed, as the connecting side sees it:
 * - `refused`: the broker's ZAP handler refused this peer's public key (status 400);
 * - `mechanism-mismatch`: one side uses CURVE and the other does not;
 * - `failed`: the handshake broke off, typically a wrong `serverPublicKey` (the broker cannot
 *   decrypt the HELLO and drops the connection).
 */
export type HandshakeFailure = 'refused' | 'mechanism-mismatch' | 'failed';

/** What a {@link watchHandshakes} listener hears. */
export interface HandshakeListener {
  succeeded(): void;
  failed(failure: HandshakeFailure): void;
}

/** Tries to open a socket's observer this many times before going without. */
const OBSERVER_ATTEMPTS = 3;

/**
 * Follows the security handshakes of a connecting socket through its event observer (ZMQ
 * socket monitor). Internal to the client and worker, which watch CURVE sockets only.
 *
 * The observer is never closed by hand: it ends when its socket closes (libzmq sends
 * MONITOR_STOPPED). Closing an observer before its socket leaves libzmq's monitor attached,
 * leaking a socket and its `inproc://zmq.monitor.*` endpoint each time (zeromq.js issue
 * #716: after enough of them, new observers fail and the context runs out of sockets). The
 * returned function only stops the listener from hearing more.
 *
 * Best effort: should an observer fail to open even so (zeromq.js names monitor endpoints
 * after memory addresses), a new one is tried, and after a few failures the socket goes
 * unwatched: its requests still time out as usual, only without the precise reason.
 */
export function watchHandshakes(socket: zmq.Socket, listener: HandshakeListener): () => void {
  let observer: zmq.Observer | undefined;
  for (let attempt = 0; attempt < OBSERVER_ATTEMPTS && observer === undefined; attempt += 1) {
    try {
      observer = socket.events;
    } catch {
      observer = undefined;
    }
  }
  if (observer === undefined) return () => undefined;
  const watched = observer;
  let listening = true;
  void (async () => {
    try {
      for await (const event of watched) {
        if (!listening) continue; // drain until the socket's close ends the observer
        switch (event.type) {
          case 'handshake':
            listener.succeeded();
            break;
          case 'handshake:error:auth':
            listener.failed('refused');
            break;
          case 'handshake:error:protocol':
            listener.failed(event.error.code === 'ERR_ZMTP_MECHANISM_MISMATCH' ? 'mechanism-mismatch' : 'failed');
            break;
          case 'handshake:error:other':
            listener.failed('failed');
            break;
          default:
            break;
        }
      }
    } catch {
      // The observer or its socket was closed during a receive.
    }
  })();
  return () => {
    listening = false;
  };
}
