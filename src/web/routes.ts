/**
 * The hosted web pages (login, sign-up, account, password reset, e-mail verification) and their static
 * assets. Pages are server-rendered skeletons; their scripts call the JSON API, so no rule of the
 * service is implemented twice.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.ts';
import { pageContext, type PageContext } from './pages/common.ts';
import { loginPage } from './pages/login.ts';
import { signupPage } from './pages/signup.ts';
import { accountPage } from './pages/account.ts';
import { forgotPasswordPage, resetPasswordPage } from './pages/password.ts';
import { verifyEmailPage } from './pages/verify-email.ts';

/** Options of the web-pages plugin. */
export interface WebRoutesOptions {
  config: Config;
}

/** The fixed set of files served under `/assets/`, with their media types. */
const ASSET_TYPES: Readonly<Record<string, string>> = {
  'style.css': 'text/css; charset=utf-8',
  'logo.svg': 'image/svg+xml',
  'common.js': 'text/javascript; charset=utf-8',
  'login.js': 'text/javascript; charset=utf-8',
  'signup.js': 'text/javascript; charset=utf-8',
  'account.js': 'text/javascript; charset=utf-8',
  'connected-apps.js': 'text/javascript; charset=utf-8',
  'security-activity.js': 'text/javascript; charset=utf-8',
  'password.js': 'text/javascript; charset=utf-8',
  'verify-email.js': 'text/javascript; charset=utf-8',
  'passkey.js': 'text/javascript; charset=utf-8',
};

/**
 * Assets served from installed packages: @simplewebauthn/browser's self-contained bundle (a classic
 * script defining `SimpleWebAuthnBrowser`), resolved through the package so an upgrade is picked up.
 */
const PACKAGE_ASSETS: Readonly<Record<string, { url: URL; type: string }>> = {
  'simplewebauthn-browser.js': {
    url: new URL('dist/bundle/index.umd.min.js', new URL('../', import.meta.resolve('@simplewebauthn/browser'))),
    type: 'text/javascript; charset=utf-8',
  },
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

/** Reads every asset once at start-up: a fixed map cannot be tricked into serving another file. */
async function loadAssets(): Promise<Map<string, Asset>> {
  const dir = new URL('./assets/', import.meta.url);
  const assets = new Map<string, Asset>();
  const files: Array<[string, URL, string]> = [
    ...Object.entries(ASSET_TYPES).map(([name, type]): [string, URL, string] => [name, new URL(name, dir), type]),
    ...Object.entries(PACKAGE_ASSETS).map(([name, a]): [string, URL, string] => [name, a.url, a.type]),
  ];
  for (const [name, file, type] of files) {
    const body = await readFile(file);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    assets.set(name, { body, type, etag });
  }
  return assets;
}

function stringParam(query: unknown, name: string): string | undefined {
  const v = (query as Record<string, unknown> | undefined)?.[name];
  return typeof v === 'string' ? v : undefined;
}

/** Registers the page routes and `/assets/*` on `app`. */
export async function webRoutes(app: FastifyInstance, opts: WebRoutesOptions): Promise<void> {
  const { config } = opts;
  const assets = await loadAssets();

  const sendPage = (reply: FastifyReply, page: string): FastifyReply =>
    reply
      // Pages may carry one-time tokens in their URL and reflect the session state: never cache them.
      .header('Cache-Control', 'no-store')
      .type('text/html; charset=utf-8')
      .send(page);

  const page = (path: string, render: (ctx: PageContext, request: FastifyRequest) => string): void => {
    app.get(path, { schema: { hide: true } }, async (request, reply) =>
      sendPage(reply, render(pageContext(config, stringParam(request.query, 'return_to')), request)),
    );
  };

  page('/', (ctx) => loginPage(ctx));
  page('/login', (ctx) => loginPage(ctx));
  page('/signup', (ctx) => signupPage(ctx));
  page('/account', (ctx, request) => accountPage(ctx, stringParam(request.query, 'welcome') === '1'));
  page('/forgot-password', (ctx) => forgotPasswordPage(ctx));
  page('/reset-password', (ctx, request) => resetPasswordPage(ctx, stringParam(request.query, 'token') || undefined));
  page('/verify-email', (ctx, request) =>
    verifyEmailPage(ctx, stringParam(request.query, 'status'), stringParam(request.query, 'token') || undefined),
  );

  app.get<{ Params: { file: string } }>('/assets/:file', { schema: { hide: true } }, async (request, reply) => {
    const asset = assets.get(request.params.file);
    if (!asset) return reply.callNotFound();
    // File names carry no version, so browsers revalidate every time; the ETag makes that a cheap 304.
    reply.header('Cache-Control', 'no-cache').header('ETag', asset.etag);
    if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
    return reply.type(asset.type).send(asset.body);
  });
}
