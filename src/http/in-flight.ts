/**
 * Requests whose handlers are still running, for a graceful shutdown. `app.close()` resolves once the
 * server's connections are gone, but a client that gives up (closes its socket mid-request) leaves
 * its handler running: a login still hashing a password would then meet a closed database pool and
 * fail with a 500 in the log. Shutdown waits for these handlers before it closes the database.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';

export interface InFlight {
  /** How many tracked handlers are running now. */
  readonly size: number;
  /** Resolves when no tracked handler is running, or after `timeoutMs` (then with how many were left). */
  drain(timeoutMs: number): Promise<number>;
}

/** What ends the tracking of a request, for {@link handOffSettled} (whichever tracker took it). */
const finishers = new WeakMap<FastifyRequest, () => void>();

/**
 * A route that hijacks its reply and hands the raw request to another handler (the OpenID engine)
 * calls this once that handler has finished: no onSend runs for a hijacked reply, and no onResponse
 * either when its client went away, so without it a cancelled request would stay "running" for good
 * (memory an anonymous client can pile up, and a shutdown waiting out the whole drain).
 */
export function handOffSettled(request: FastifyRequest): void {
  finishers.get(request)?.();
}

/** Adds the tracking hooks to `app` (before it is ready). */
export function trackInFlight(app: FastifyInstance): InFlight {
  const running = new Set<FastifyRequest>();
  let idle: (() => void) | undefined;
  const done = (request: FastifyRequest) => {
    if (running.delete(request) && running.size === 0) idle?.();
  };
  app.addHook('onRequest', (request, _reply, next) => {
    running.add(request);
    finishers.set(request, () => done(request));
    next();
  });
  // onSend runs once the handler (or the error handler) has produced its answer, even for a client
  // that has gone; onResponse covers answers sent without onSend (e.g. some early errors).
  app.addHook('onSend', (request, _reply, payload, next) => {
    done(request);
    next(null, payload);
  });
  app.addHook('onResponse', (request, _reply, next) => {
    done(request);
    next();
  });
  return {
    get size() {
      return running.size;
    },
    drain(timeoutMs) {
      if (running.size === 0) return Promise.resolve(0);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(running.size), timeoutMs);
        idle = () => {
          clearTimeout(timer);
          resolve(0);
        };
      });
    },
  };
}
