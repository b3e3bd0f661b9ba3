/**
 * buildApp(deps): the Fastify application from explicit dependencies. It never listens and never
 * reads the environment (server.ts reads it, instance.ts listens); tests hand in PGlite, a frozen clock and a capturing mailer.
 */
import type { Socket } from 'node:net';
import { sharedCompilers } from './http/schema-compilers.ts';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import cookie from '@fastify/cookie';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Deps } from './deps.ts';
import { installErrorHandling } from './http/problem.ts';
import { appServerOptions, clientErrorHandler, expectationFailed, frameworkErrors, requireHost, type HeaderSetter } from './http/framework-errors.ts';
import { checkFormEncoding, installJsonBodyParser } from './http/body-encoding.ts';
import { guardBodyInput, guardUrlInput } from './http/input-guard.ts';
import { documentOperation } from './http/operation-ids.ts';
import { documentOptionalBody, markOptionalBody } from './http/empty-body.ts';
import { noStoreForApi } from './http/no-store.ts';
import { logRequest } from './http/request-log.ts';
import { installSecurityHeaders } from './http/security-headers.ts';
import { authBeforeBody } from './http/plugins/auth.ts';
import { createMetrics, instrument, type Metrics } from './http/metrics.ts';
import { metricsRoutes } from './http/routes/metrics.ts';
import { accountRoutes } from './http/routes/account.ts';
import { authJwtRoutes } from './http/routes/auth-jwt.ts';
import { authTotpRoutes } from './http/routes/auth-totp.ts';
import { authEmailOtpRoutes } from './http/routes/auth-email-otp.ts';
import { backupCodesRoutes } from './http/routes/backup-codes.ts';
import { passkeyRoutes } from './http/routes/passkeys/manage.ts';
import { passkeyLoginRoutes } from './http/routes/passkeys/login.ts';
import { serviceRoutes, servicePathsOutsideRoutes } from './http/routes/service.ts';
import { problems, URL_PROBLEMS } from './http/schemas.ts';
import { sessionRoutes } from './http/routes/sessions.ts';
import { userRoutes } from './http/routes/users.ts';
import { webRoutes } from './web/routes.ts';
import { installOidc } from './oidc/mount.ts';
import { connectedAppRoutes } from './http/routes/connected-apps.ts';
import { adminRoutes } from './http/routes/admin/index.ts';
import { announceEvents } from './services/events/publish.ts';
import { securityEventRoutes } from './http/routes/security-events.ts';

export interface AppOptions {
  /** Serve the development mailbox page (only ever without SMTP and outside production). */
  devMailbox?: boolean;
  /** The metrics registry (instance.ts shares it with the METRICS_PORT listener); a fresh one otherwise. */
  metrics?: Metrics;
}

/** The Content-Security-Policy of every response: no inline script, no framing. */
export const CONTENT_SECURITY_POLICY = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
  fontSrc: ["'self'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
  baseUri: ["'none'"],
  objectSrc: ["'none'"],
};

/**
 * Fastify's own number form now trusts nothing, so a hop count becomes a function: the socket peer is
 * hop 0, and the client address is the entry the n-th proxy appended (never one the client wrote itself).
 */
function trustProxyOption(tp: Deps['config']['trustProxy']): false | string[] | ((address: string, hop: number) => boolean) {
  if (tp === false) return false;
  if (typeof tp === 'number') return (_address, hop) => hop < tp;
  return [...tp];
}

export async function buildApp(deps: Deps, options: AppOptions = {}): Promise<FastifyInstance> {
  const { config } = deps;
  // Audited changes of the event catalogue become events in the same transaction. openDeps already did
  // this for the server; deps made by hand (tests) did not go through it. Idempotent: one follower per process.
  announceEvents(config);
  // Set once the headers are installed below; the framework's error answers run after that.
  const securityHeaders: HeaderSetter = {};
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    // Request lines are logged at debug by logRequest (see the LOG_LEVEL table in the README). Through
    // a LogController: the top-level `disableRequestLogging` prints a deprecation warning at every start.
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: trustProxyOption(config.trustProxy),
    // Path parameters up to 2,048 characters reach their routes, which check authentication first and
    // then answer their own 404 (user_not_found, passkey_not_found…) for a name or id nobody has; at
    // the router's limit of 200 an over-long one got the generic not_found before any of that.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 2048 },
    // Refusals before any route runs (an undecodable path, an over-long parameter, what Node's HTTP
    // parser cannot read) are problem documents too.
    frameworkErrors: frameworkErrors(securityHeaders),
    clientErrorHandler,
    ...appServerOptions(config.requestTimeoutSeconds),
    ajv: { customOptions: { allErrors: true, removeAdditional: true, coerceTypes: false, useDefaults: true } },
    schemaController: { compilersFactory: sharedCompilers },
  });
  // The client's address is read as soon as its connection is accepted, and Node's socket keeps it:
  // asked only once a handler runs, a socket its client has reset by then has no peer left to tell,
  // and request.ip (the limits' key, the audit's address) would be undefined.
  app.server.on('connection', (socket: Socket) => void socket.remoteAddress);
  // An Expect other than 100-continue: a 417 problem document instead of Node's bare one.
  app.server.on('checkExpectation', expectationFailed(securityHeaders));
  app.decorateRequest('auth', null);
  // Every (auth) route authenticates before it reads a body: 401 comes before 415 and 422.
  app.addHook('onRoute', authBeforeBody);
  app.addHook('onRoute', documentOperation);
  app.addHook('onRoute', markOptionalBody);
  app.addHook('preValidation', guardBodyInput);
  app.addHook('onResponse', logRequest);
  // Fastify parses text/plain by default; no endpoint takes it, so it must be 415 like any other stranger type.
  app.removeContentTypeParser('text/plain');
  // Bodies are UTF-8 or refused, never decoded with replacement characters (body-encoding.ts).
  installJsonBodyParser(app);
  app.addHook('preParsing', checkFormEncoding);
  // API answers carry tokens, codes, secrets or personal data: no cache keeps them unless a route says otherwise.
  app.addHook('onSend', noStoreForApi);

  installErrorHandling(app);
  const metrics = options.metrics ?? createMetrics();
  instrument(app, metrics);

  securityHeaders.set = installSecurityHeaders(app, {
    contentSecurityPolicy: { useDefaults: false, directives: CONTENT_SECURITY_POLICY },
    // HSTS only makes sense (and only takes effect) on https.
    strictTransportSecurity: config.secureCookies ? { maxAge: 31536000, includeSubDomains: true } : false,
    crossOriginEmbedderPolicy: false,
  });
  // After the security headers' hook, so that a refused query or path gets them too.
  app.addHook('onRequest', guardUrlInput);
  app.addHook('onRequest', requireHost);
  if (config.trustedOrigins.length) {
    // Browser apps on TRUSTED_ORIGINS may call the API with credentials; no other origin may.
    await app.register(cors, { origin: [...config.trustedOrigins], credentials: true, methods: ['GET', 'POST', 'PATCH', 'DELETE'] });
  }
  await app.register(cookie);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Twofold API',
        version: '1.0.0',
        license: { name: 'MIT', identifier: 'MIT' },
        description: 'Two-factor authentication: password plus TOTP, e-mailed codes, passkeys or backup codes, and passwordless passkey sign-in; RS256 JWTs verifiable offline through the JWKS. Errors are RFC 9457 problem details with a stable `code`.',
      },
      servers: [{ url: config.publicUrl }],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          cookieAuth: { type: 'apiKey', in: 'cookie', name: 'access_token' },
          adminApiKey: { type: 'http', scheme: 'bearer', description: 'ADMIN_API_KEY (programs); people use bearerAuth with an admin aal2 token' },
        },
      },
      tags: [
        { name: 'Users', description: 'Sign-up, profiles, e-mail verification, passwords' },
        { name: 'Login and tokens', description: 'Login, second step, refresh, logout, sessions' },
        { name: 'Second factors', description: 'TOTP, e-mailed codes, backup codes' },
        { name: 'Passkeys', description: 'WebAuthn passkeys: add, list, rename, remove (sign-in with them is under Login and tokens)' },
        { name: 'Service', description: 'Keys, discovery, health, metrics' },
        { name: 'Administration', description: 'Users, audit log, mail status (ADMIN_API_KEY, or role admin with aal2)' },
        { name: 'Webhooks', description: 'Signed webhooks (Standard Webhooks) announcing events to other services; admin only' },
        { name: 'OpenID clients', description: 'Applications that "sign in with Twofold" (OpenID Connect); admin only' },
      ],
    },
    // Contract service endpoints whose routes stay hidden (discovery also takes POST and OPTIONS, /docs
    // is swagger-ui's, /openapi.json is this document) are described by hand (routes/service.ts).
    // The URL guard (input-guard.ts) refuses a NUL or a lone surrogate in any request's path or query
    // with 400 malformed_request, so every operation declares that 400, also those without parameters.
    // Routes that take a missing body as `{}` (empty-body.ts) declare their body optional.
    transformObject: (doc) => {
      if (!('openapiObject' in doc)) return doc.swaggerObject;
      const paths = Object.assign((doc.openapiObject.paths ??= {}), servicePathsOutsideRoutes());
      for (const operations of Object.values(paths)) {
        for (const operation of Object.values(operations ?? {}) as Array<{ responses?: Record<string, unknown>; requestBody?: { required?: boolean } }>) {
          if (operation?.responses && !operation.responses['400']) Object.assign(operation.responses, problems(URL_PROBLEMS));
          if (operation) documentOptionalBody(operation);
        }
      }
      return doc.openapiObject;
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true, uiConfig: { docExpansion: 'list', deepLinking: true } });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(userRoutes, { deps });
  await app.register(accountRoutes, { deps });
  await app.register(authJwtRoutes, { deps });
  await app.register(sessionRoutes, { deps });
  await app.register(authTotpRoutes, { deps });
  await app.register(authEmailOtpRoutes, { deps });
  await app.register(backupCodesRoutes, { deps });
  await app.register(passkeyRoutes, { deps });
  await app.register(passkeyLoginRoutes, { deps });
  await app.register(serviceRoutes, { deps });
  await installOidc(app, deps);
  await app.register(connectedAppRoutes, { deps });
  await app.register(securityEventRoutes, { deps });
  await app.register(adminRoutes, { deps });
  if (config.metricsPort === undefined) await app.register(metricsRoutes, { config, metrics });
  await app.register(webRoutes, { config });
  if (options.devMailbox && config.env !== 'production') {
    const { devMailboxRoutes, servedHostnames } = await import('./http/routes/dev-mailbox.ts');
    await app.register(devMailboxRoutes, { db: deps.db, env: config.env, hostnames: servedHostnames(config.publicUrl) });
  }
  return app;
}
