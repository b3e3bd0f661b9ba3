/**
 * Mounts the OpenID provider in the Fastify application: the engine's endpoints (`/oidc/*` and the
 * discovery document) are handed to its Node handler before Fastify parses any body; our interaction
 * routes, the session links and the session-end sweep are wired here.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { decodeJwt } from 'jose';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { ACCESS_COOKIE, BROWSER_SESSION_COOKIE, browserSessionId, clearedCookieHeaders } from '../http/cookies.ts';
import { handOffSettled } from '../http/in-flight.ts';
import { problemBody } from '../http/problem.ts';
import { oidcErrorPage } from '../web/pages/oidc.ts';
import { pageCsp, sendPage } from './page-policy.ts';
import { linkProviderSession } from '../services/oidc/interaction-login.ts';
import { assertFileClientsUnregistered } from '../services/oidc/clients.ts';
import { endLinkedSession } from '../services/oidc/logout.ts';
import { onSessionsEnded } from '../services/sessions-ended.ts';
import { koaClientInfo } from './client-info.ts';
import { loadClientsFile } from './clients-file.ts';
import { LazyEngine } from './engine.ts';
import { interactionRoutes } from './interactions.ts';
import { SessionEndSweeper } from './session-end.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** The OpenID provider (built on first use) and its session-end sweeper. */
    oidc: { engine: LazyEngine; sweeper: SessionEndSweeper };
  }
}

/**
 * Koa middleware of the engine: a request no endpoint of the engine took (its router left a 404 with
 * no body) gets the service's `not_found` problem document, as every other unknown route does, instead
 * of Koa's plain "Not Found". The engine's own errors (JSON or HTML bodies, any status) pass unchanged.
 */
async function unknownRoute(ctx: KoaContextWithOIDC, next: () => Promise<void>) {
  await next();
  if (ctx.status !== 404 || ctx.body != null) return;
  ctx.body = JSON.stringify(problemBody('not_found', 404, `No route ${ctx.method} ${ctx.path}.`));
  // After the body: Koa sets the type and a 200 status from a body unless told otherwise.
  ctx.type = 'application/problem+json; charset=utf-8';
  ctx.status = 404;
}

/** The methods that reach those endpoints: GET, and HEAD (the engine's router runs GET routes for it); POST is not enabled (enableHttpPostMethods). */
const ROW_METHODS = new Set(['GET', 'HEAD']);

/**
 * Koa middleware of the engine, first in line: the endpoints that store a row for any request, without
 * a login or a client secret — authorization (an interaction, holding the request's parameters, kept
 * for an hour) and logout (a provider session holding the logout form's secret) — are counted on the
 * `oidc:ip` quota before the engine's router runs; over it, 429 with Retry-After and the engine's own
 * error page (these are browser pages, as its other errors there, the 503 of an outage included).
 * Here rather than in the Fastify hook, because only here is the path the one the router
 * matches (Koa's parse of the request target); the router ignores ASCII case and one trailing slash,
 * and so does this. Token, userinfo, JWKS, discovery and introspection are not counted: relying
 * parties' servers call them at high rates, and they store nothing for an anonymous caller.
 */
function anonymousRowQuota(deps: Deps, paths: readonly string[]) {
  const counted = new Set(paths.map((p) => p.toLowerCase()));
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
    const path = ctx.path.toLowerCase();
    const routed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
    if (ROW_METHODS.has(ctx.method) && counted.has(routed)) {
      try {
        // ctx.ip is Fastify's client address (the hook below hands it over as X-Forwarded-For).
        await deps.limiter.consume('oidc:ip', ctx.ip);
      } catch (e) {
        if (!(e instanceof AppError)) throw e;
        for (const [name, value] of Object.entries(e.headers ?? {})) ctx.set(name, value);
        ctx.set('Content-Security-Policy', pageCsp([]));
        sendPage(ctx, oidcErrorPage(deps.config.productName, 'temporarily_unavailable', 'Too many sign-in requests from your network. Try again in a minute.'));
        // After the body: Koa sets a 200 status from a body unless told otherwise.
        ctx.status = e.status;
        return;
      }
    }
    await next();
  };
}

/**
 * Koa middleware of the engine: after a login resumes, link the provider session to the Twofold
 * session the hosted login opened; after an RP-initiated logout, end that Twofold session too and
 * clear its cookies (one session model: logging out of an application logs out of Twofold).
 */
function sessionGlue(deps: Deps) {
  const clear = (ctx: KoaContextWithOIDC) => {
    for (const header of clearedCookieHeaders(deps.config)) ctx.append('Set-Cookie', header);
  };
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
    await next();
    const oidc = ctx.oidc as KoaContextWithOIDC['oidc'] | undefined;
    if (!oidc) return;
    if (oidc.route === 'resume') {
      const login = (oidc.result as { login?: { accountId?: string; twofoldSessionId?: string } } | undefined)?.login;
      if (login?.twofoldSessionId && login.accountId && oidc.session?.uid) {
        await linkProviderSession(deps, oidc.session.uid, login.twofoldSessionId, login.accountId, koaClientInfo(ctx));
      }
    } else if (oidc.route === 'end_session_confirm' && (oidc.session as { destroyed?: boolean } | undefined)?.destroyed) {
      const link = await endLinkedSession(deps, oidc.session!.uid, koaClientInfo(ctx));
      // Clear the cookies only when they are that session's: when switching accounts the engine logs
      // the previous provider session out while the browser already holds the new user's session. A
      // provider session with no link ended no Twofold session: the cookies stay (any site can send a
      // browser through the engine's self-submitting logout form when it has no provider session).
      if (link && browserSessionOf(deps, ctx) === link.session_id) clear(ctx);
    }
  };
}

/**
 * The Twofold session this browser holds: its browser-session cookie, or for a browser logged in
 * before that cookie existed, the `sid` of its access cookie (unverified: only to decide whether to
 * clear the cookies).
 */
function browserSessionOf(deps: Deps, ctx: KoaContextWithOIDC): string | undefined {
  const marked = browserSessionId(deps.tokenHasher, ctx.cookies.get(BROWSER_SESSION_COOKIE));
  if (marked) return marked;
  const token = ctx.cookies.get(ACCESS_COOKIE);
  if (!token) return undefined;
  try {
    const sid = decodeJwt(token).sid;
    return typeof sid === 'string' ? sid : undefined;
  } catch {
    return undefined;
  }
}

/** Installs the provider on the root instance: its endpoints, interaction pages and session-end sweep. */
export async function installOidc(app: FastifyInstance, deps: Deps): Promise<void> {
  // The clients file is read and checked at start-up: a mistake in it stops the start, not a first request.
  const fileClients = loadClientsFile(deps.config.oidc.clientsFile, deps.config.secureCookies);
  // And an entry whose id an admin-API client holds stops it too: the file's client would take over
  // that client's consents, grants and tokens (services/oidc/clients.ts says why refused, not dropped).
  await assertFileClientsUnregistered(deps, fileClients);
  const engine = new LazyEngine(async () => {
    const { createProvider, OIDC_ROUTES } = await import('./provider.ts');
    const { provider, signingKey } = await createProvider(deps, fileClients);
    provider.use(anonymousRowQuota(deps, [OIDC_ROUTES.authorization, OIDC_ROUTES.end_session]));
    provider.use(unknownRoute);
    provider.use(sessionGlue(deps));
    provider.on('server_error', (_ctx, err) => deps.logger.error({ err }, 'oidc server error'));
    // Errors after the engine's own handler (a session saved on the way out) reach Koa's (the provider
    // is the Koa application): logged here instead of printed to stderr. Client errors (`expose`, as a
    // refused parameter) and 404s are the client's, as Koa's own handler treats them.
    (provider as unknown as NodeJS.EventEmitter).on('error', (err: { expose?: boolean; status?: number }) => {
      if (err.expose || err.status === 404) deps.logger.debug({ err }, 'oidc request refused after its answer was chosen');
      else deps.logger.error({ err }, 'oidc request failed after its answer was chosen');
    });
    provider.on('backchannel.error', (_ctx, err, client) => deps.logger.warn({ err, clientId: client.clientId }, 'oidc back-channel logout failed'));
    return { provider, signingKey, callback: provider.callback() };
  });
  const sweeper = new SessionEndSweeper(deps, engine);
  app.decorate('oidc', { engine, sweeper });

  const publicUrl = new URL(deps.config.publicUrl);
  // onRequest, before Fastify reads the body: the engine parses its own requests.
  const hand = async (request: FastifyRequest, reply: FastifyReply) => {
    // The app's input guard has checked the query (onRequest); bodies are the engine's, and the adapter
    // refuses what it cannot store.
    // The engine builds endpoint URLs from the request; they must always be PUBLIC_URL's, whatever
    // Host a client sent. The client address is the one Fastify worked out (TRUST_PROXY).
    request.raw.headers['x-forwarded-proto'] = publicUrl.protocol.slice(0, -1);
    request.raw.headers['x-forwarded-host'] = publicUrl.host;
    request.raw.headers['x-forwarded-for'] = request.ip;
    // A request line in absolute form (`GET http://evil.example/.well-known/openid-configuration`,
    // which HTTP/1.1 servers must accept) reached the engine as such, and Koa's `href` takes that
    // authority over the forwarded host: the discovery document then named the sender's host in every
    // endpoint and the JWKS address, for any cache in front to keep. Only the path and query go on.
    request.raw.url = originForm(request.raw.url);
    const { signingKey, callback } = await engine.get();
    await signingKey.refresh();
    reply.hijack();
    await new Promise<void>((resolve) => {
      reply.raw.once('finish', resolve);
      reply.raw.once('close', resolve);
      // The engine's handler may still run after its client has gone (Koa settles once its middleware
      // is done): the request counts as running until then, not for good (a hijacked reply gets no onSend).
      const settled = () => {
        handOffSettled(request);
        resolve();
      };
      void callback(request.raw, reply.raw).then(settled, settled);
    });
    return reply;
  };
  const never = async () => undefined;
  app.route({ method: ['GET', 'POST', 'OPTIONS'], url: '/.well-known/openid-configuration', schema: { hide: true }, onRequest: hand, handler: never });
  app.route({ method: ['GET', 'POST', 'DELETE', 'OPTIONS'], url: '/oidc/*', schema: { hide: true }, onRequest: hand, handler: never });
  await app.register(interactionRoutes, { deps, engine: async () => (await engine.get()).provider });

  // Whatever ended Twofold sessions (a route, a refresh token reused, a first second factor, an admin),
  // the sweep runs right after its commit instead of at the timer; the sweeper runs one sweep at a time
  // and folds the calls made meanwhile into one more, so a burst of revocations starts no pile of sweeps.
  // Sessions of another database (another app built in this process: tests) are not this sweeper's.
  let unsubscribe: (() => void) | undefined;
  app.addHook('onReady', async () => {
    unsubscribe = onSessionsEnded((db) => {
      if (db === deps.db) void sweeper.run();
    });
    sweeper.start(deps.config.oidc.sweepIntervalMs);
  });
  app.addHook('onClose', async () => {
    unsubscribe?.();
    await sweeper.stop();
  });
}

/** The path and query of a request target in any form (`/a?b`, or `http://host/a?b`). */
export function originForm(target: string | undefined): string {
  if (!target || target.startsWith('/')) return target ?? '/';
  try {
    const u = new URL(target);
    return `${u.pathname}${u.search}`;
  } catch {
    return '/';
  }
}
