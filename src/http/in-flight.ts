/**
 * Requests whose handlers are still running, for a graceful shutdown. `app.close()` resolves once the
 * server's connections are gone, but a client that gives up (closes its socket mid-request) leaves
 * its handler running: a login still hashing a password would then meet a closed database pool and
 * fail with a 500 in the log. Shutdown waits for these handlers before it closes the database.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';

export interface InFlight {
  /** Resolves when no tracked handler is running, or after `timeoutMs` (then with how many were left). */
  drain(timeoutMs: number): Promise<number>;
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
