/**
 * buildApp(deps): the Fastify application from explicit dependencies. It never listens and never
 * reads the environment; server.ts does both, tests hand in PGlite, a frozen clock and a capturing mailer.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import cookie from '@fastify/cookie';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Deps } from './deps.ts';
import { installErrorHandling } from './http/problem.ts';
import { createMetrics, instrument } from './http/metrics.ts';
import { accountRoutes } from './http/routes/account.ts';
import { authJwtRoutes } from './http/routes/auth-jwt.ts';
import { authTotpRoutes } from './http/routes/auth-totp.ts';
import { authEmailOtpRoutes } from './http/routes/auth-email-otp.ts';
import { backupCodesRoutes } from './http/routes/backup-codes.ts';
import { serviceRoutes } from './http/routes/service.ts';
import { sessionRoutes } from './http/routes/sessions.ts';
import { userRoutes } from './http/routes/users.ts';
import { webRoutes } from './web/routes.ts';

export interface AppOptions {
  /** Serve the development mailbox page (only ever without SMTP and outside production). */
  devMailbox?: boolean;
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

export async function buildApp(deps: Deps, options: AppOptions = {}): Promise<FastifyInstance> {
  const { config } = deps;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    ajv: { customOptions: { allErrors: true, removeAdditional: true, coerceTypes: false, useDefaults: true } },
  });
  app.decorateRequest('auth', null);

  installErrorHandling(app);
  const metrics = createMetrics();
  instrument(app, metrics);

  await app.register(helmet, {
    contentSecurityPolicy: { useDefaults: false, directives: CONTENT_SECURITY_POLICY },
    // HSTS only makes sense (and only takes effect) on https.
    strictTransportSecurity: config.secureCookies ? { maxAge: 31536000, includeSubDomains: true } : false,
    crossOriginEmbedderPolicy: false,
  });
  if (config.trustedOrigins.length) {
    // Browser apps on TRUSTED_ORIGINS may call the API with credentials; no other origin may.
    await app.register(cors, { origin: [...config.trustedOrigins], credentials: true, methods: ['GET', 'POST', 'DELETE'] });
  }
  await app.register(cookie);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Twofold API',
        version: '1.0.0',
        description: 'Two-factor authentication: password plus TOTP, e-mailed codes or backup codes; RS256 JWTs verifiable offline through the JWKS. Errors are RFC 9457 problem details with a stable `code`.',
      },
      servers: [{ url: config.publicUrl }],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          cookieAuth: { type: 'apiKey', in: 'cookie', name: 'access_token' },
        },
      },
      tags: [
        { name: 'Users', description: 'Sign-up, profiles, e-mail verification, passwords' },
        { name: 'Login and tokens', description: 'Login, second step, refresh, logout, sessions' },
        { name: 'Second factors', description: 'TOTP, e-mailed codes, backup codes' },
        { name: 'Service', description: 'Keys, discovery, health, metrics' },
      ],
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
  await app.register(serviceRoutes, { deps, metrics });
  await app.register(webRoutes, { config });
  if (options.devMailbox && config.env !== 'production') {
    const { devMailboxRoutes } = await import('./http/routes/dev-mailbox.ts');
    await app.register(devMailboxRoutes, { db: deps.db, env: config.env });
  }
  return app;
}
