/**
 * The bench's load generator, run as a child process of bench/run.ts (never inside it): autocannon
 * in the same process as the bench driver competes with it for the event loop and under-measured the
 * service by ~25 %. The driver sends one job over IPC; this process runs it and sends the result back.
 * Jobs that need per-request state (rotating refresh tokens, fresh TOTP codes) keep it here.
 */
import autocannon from 'autocannon';
import { createPrivateKey } from 'node:crypto';
import { totpCodeAt } from '../src/crypto/totp.ts';
import { SoftwareAuthenticator } from '../test/helpers/webauthn.ts';

/** A passkey the bench registered, in a form that crosses the IPC channel. */
export interface ExportedPasskey {
  /** base64url credential id */
  id: string;
  /** PKCS#8 PEM of the P-256 private key */
  pem: string;
  userHandle: string;
  rpId: string;
  origin: string;
}

export type LoadJob =
  | { kind: 'get'; url: string; connections: number; duration: number; headers?: Record<string, string> }
  | { kind: 'get-as'; base: string; path: string; connections: number; duration: number; bearers: string[] }
  | { kind: 'login-as'; base: string; connections: number; duration: number; usernames: string[]; password: string }
  | { kind: 'refresh'; base: string; connections: number; duration: number; sessions: string[] }
  | { kind: 'totp-login'; base: string; connections: number; password: string; users: Array<{ username: string; secret: string; lastStep: number }> }
  | { kind: 'passkey-login'; base: string; connections: number; duration: number; passkeys: ExportedPasskey[] };

/** What the driver needs from autocannon's result. */
export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  requests: number;
}

/** The current TOTP time step. */
export function currentStep(): number {
  return Math.floor(Date.now() / 30000);
}

/** The TOTP code of `step`. */
export function codeFor(secret: string, step: number): string {
  return totpCodeAt(secret, new Date(step * 30000 + 15000));
}

/** Hands out `items` in turn, one per request (autocannon resets a connection's context after each pass through its requests). */
function inTurn<T>(items: readonly T[]): () => T {
  let next = 0;
  return () => items[next++ % items.length]!;
}

function options(job: LoadJob): autocannon.Options {
  const json = { 'content-type': 'application/json' };
  switch (job.kind) {
    case 'get':
      return { url: job.url, connections: job.connections, duration: job.duration, headers: job.headers };
    case 'get-as': {
      // Each connection is one user's session (its own access token), as many clients would be: the
      // instance batches simultaneous session checks, and one token for every connection would make
      // each batch a single row.
      const bearerOf = inTurn(job.bearers.map((token) => `Bearer ${token}`));
      return {
        url: job.base, connections: job.connections, duration: job.duration,
        requests: [{ method: 'GET', path: job.path, setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: bearerOf() } }) }],
      };
    }
    case 'login-as': {
      // Password logins of many users in turn: a user keeps at most MAX_SESSIONS_PER_USER live sessions
      // (100), and one user logging in thousands of times would measure a login plus the eviction of
      // its oldest session (a revocation and its audit entry, and its event for the webhook row).
      const bodyOf = inTurn(job.usernames.map((username) => JSON.stringify({ username, password: job.password })));
      return {
        url: job.base, connections: job.connections, duration: job.duration,
        requests: [{ method: 'POST', path: '/api/v1/auth-jwt/login', headers: json, setupRequest: (req) => ({ ...req, body: bodyOf() }) }],
      };
    }
    case 'refresh': {
      // Each session's current refresh token waits in this pool while no request holds it: a request
      // takes one, its answer puts the rotated one back. Not kept in autocannon's per-connection
      // context: autocannon resets that after every pass through `requests` (here every request), so
      // a token kept there was lost and each request sent one of the sessions' first tokens again —
      // the two-tabs grace path instead of rotation, then reuse detection once the grace ran out.
      const current = [...job.sessions];
      return {
        url: job.base,
        connections: job.connections,
        duration: job.duration,
        requests: [{
          method: 'POST',
          path: '/api/v1/auth-jwt/refresh',
          headers: json,
          setupRequest: (req) => {
            // A session whose refresh failed is gone from the pool; with none left the request is sent
            // anyway with a token that cannot work, so the failure shows in the row's non-2xx count.
            return { ...req, body: JSON.stringify({ refresh_token: current.shift() ?? 'none-left' }) };
          },
          onResponse: (status, body) => {
            if (status === 200) current.push((JSON.parse(body) as { refresh_token: string }).refresh_token);
          },
        }],
      };
    }
    case 'passkey-login': {
      // Two requests per login on each connection: options (a fresh challenge), then the signed
      // assertion. Counter 0, as synced passkeys send: concurrent logins cannot race a counter. The
      // users' passkeys in turn, one per login, each user staying under MAX_SESSIONS_PER_USER.
      const authenticatorOf = inTurn(job.passkeys.map((p) => {
        const authenticator = new SoftwareAuthenticator(p.origin);
        authenticator.credentials.push({ id: Buffer.from(p.id, 'base64url'), privateKey: createPrivateKey(p.pem), cosePublicKey: Buffer.alloc(0), rpId: p.rpId, userHandle: p.userHandle, counter: 0 });
        return authenticator;
      }));
      type Ctx = { token?: string; options?: { challenge: string; rpId?: string }; authenticator?: SoftwareAuthenticator };
      return {
        url: job.base,
        connections: job.connections,
        duration: job.duration,
        requests: [
          {
            method: 'POST',
            path: '/api/v1/auth-jwt/login/passkey/options',
            headers: json,
            body: '{}',
            onResponse: (status, body, context) => {
              if (status !== 200) return;
              const answer = JSON.parse(body) as { challenge_token: string; options: Ctx['options'] };
              (context as Ctx).token = answer.challenge_token;
              (context as Ctx).options = answer.options;
              (context as Ctx).authenticator = authenticatorOf();
            },
          },
          {
            method: 'POST',
            path: '/api/v1/auth-jwt/login/passkey',
            headers: json,
            setupRequest: (req, context) => {
              const ctx = context as Ctx;
              const credential = ctx.authenticator!.get(ctx.options!, { counter: 0 });
              return { ...req, body: JSON.stringify({ challenge_token: ctx.token, credential }) };
            },
          },
        ],
      };
    }
    case 'totp-login': {
      const users = job.users;
      let next = 0;
      return {
        url: job.base,
        connections: job.connections,
        amount: users.length,
        requests: [{
          method: 'POST',
          path: '/api/v1/auth-jwt/login',
          headers: json,
          setupRequest: (req) => {
            // The next user with a usable step: later than its last accepted one, and the current step
            // or the next (still inside the ±1 window if the request crosses a 30 s boundary in flight).
            const now = currentStep();
            let user = users[next++ % users.length]!;
            for (let i = 0; i < users.length && Math.max(user.lastStep + 1, now) > now + 1; i++) user = users[next++ % users.length]!;
            const step = Math.max(user.lastStep + 1, now);
            user.lastStep = step;
            return { ...req, body: JSON.stringify({ username: user.username, password: job.password, security_code: codeFor(user.secret, step) }) };
          },
        }],
      };
    }
  }
}

/** Runs one job in this process. */
function runJob(job: LoadJob): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    autocannon(options(job), (err, r) => {
      if (err) return reject(err);
      resolve({ rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx, requests: r.requests.total });
    });
  });
}

// As a child process: one job per message, one answer per job.
if (process.send) {
  process.on('message', (job: LoadJob) => {
    runJob(job).then(
      (result) => process.send!({ ok: true, result }),
      (err: unknown) => process.send!({ ok: false, error: String(err) }),
    );
  });
  process.send({ ready: true });
}
