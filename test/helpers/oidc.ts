/**
 * OpenID test helpers: the app listening on a real loopback port (openid-client talks HTTP to it), a
 * minimal browser (cookie jar, manual redirects) and a back-channel logout receiver.
 */
import { createServer, type Server } from 'node:http';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import * as client from 'openid-client';
import type { AppSuite, TestApp, TestClock, TestUser } from './app.ts';
import { freePort } from './net.ts';

/** A clock that follows real time (the engine counts in real seconds), movable forward for TOTP steps. */
export function realClock(): TestClock {
  let offsetMs = 0;
  const clock = (() => new Date(Date.now() + offsetMs)) as TestClock;
  clock.set = (d) => {
    offsetMs = new Date(d).getTime() - Date.now();
  };
  clock.advance = (s) => {
    offsetMs += s * 1000;
  };
  return clock;
}

export interface OidcServer extends TestApp {
  base: string;
}

/**
 * Builds the app with `clients` in an OIDC_CLIENTS_FILE and listens on a free loopback port.
 * `sameTokenHashKeyAs`: an earlier server on the same database whose TOKEN_HASH_KEY this one shares
 * (test apps each get a random one), so it finds that server's codes, tokens and provider sessions and
 * reads its browsers' provider cookies, as instances or a restart with one TOKEN_HASH_KEY do.
 */
export async function startOidcServer(t: TestContext, suite: AppSuite, clients: unknown[], env: Record<string, string> = {}, options: { sameTokenHashKeyAs?: TestApp } = {}): Promise<OidcServer> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'twofold-oidc-'));
  const file = join(dir, 'clients.json');
  await writeFile(file, JSON.stringify(clients));
  const base = `http://127.0.0.1:${port}`;
  const built = await suite.build(t, { clock: realClock(), env: { PUBLIC_URL: base, OIDC_CLIENTS_FILE: file, ...env } });
  // Before any request: the provider derives its cookie keys from the hasher when it is first built.
  if (options.sameTokenHashKeyAs) Object.assign(built.deps, { tokenHasher: options.sameTokenHashKeyAs.deps.tokenHasher });
  await built.app.listen({ port, host: '127.0.0.1' });
  return { ...built, base };
}

/** A browser: keeps cookies per name, follows nothing by itself. */
export class Browser {
  readonly cookies = new Map<string, string>();
  constructor(readonly base: string) {}

  #store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i).trim();
      const value = pair!.slice(i + 1).trim();
      if (/max-age=0/i.test(line) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  /** One request, no redirect following; same-origin requests carry Origin like a browser's. */
  async request(url: string, init: RequestInit = {}): Promise<Response> {
    const target = new URL(url, this.base);
    const headers = new Headers(init.headers);
    if (target.origin === this.base && this.cookies.size) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    if (init.method && init.method !== 'GET' && !headers.has('origin')) headers.set('origin', this.base);
    const res = await fetch(target, { ...init, headers, redirect: 'manual' });
    if (target.origin === this.base) this.#store(res);
    return res;
  }

  /**
   * Follows redirects from `url` while they stay on the service; returns the last response and, when
   * the chain left the service (to an application), that URL.
   */
  async follow(url: string, init: RequestInit = {}): Promise<{ res: Response; url: string; left?: string }> {
    let current = new URL(url, this.base).href;
    let res = await this.request(current, init);
    for (let i = 0; i < 20 && res.status >= 300 && res.status < 400; i++) {
      const next = new URL(res.headers.get('location')!, current).href;
      if (new URL(next).origin !== this.base) return { res, url: current, left: next };
      current = next;
      res = await this.request(current);
    }
    return { res, url: current };
  }

  /** Logs in through the JSON API the hosted login page uses (sets the session cookies). */
  async login(user: TestUser, extra: Record<string, string> = {}): Promise<Response> {
    const res = await this.request('/api/v1/auth-jwt/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: user.username, password: user.password, ...extra }),
    });
    if (res.status !== 200) throw new Error(`login failed: ${res.status} ${await res.text()}`);
    return res;
  }
}

/** The openid-client configuration of a client of `server` (plain http is allowed: loopback test). */
export async function rp(server: OidcServer, clientId: string, secret?: string, auth?: client.ClientAuth): Promise<client.Configuration> {
  return client.discovery(new URL(server.base), clientId, secret, auth ?? (secret ? client.ClientSecretBasic(secret) : client.None()), { execute: [client.allowInsecureRequests] });
}

/** Starts a code + PKCE authorization; returns the URL and the checks to finish it with. */
export async function authorizationStart(config: client.Configuration, redirectUri: string, params: Record<string, string> = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid profile email',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...params,
  });
  return { url: url.href, verifier, state, nonce };
}

/**
 * Runs the browser part: authorization request, hosted login (through the API, as the page does),
 * consent when asked; returns the application URL the browser was sent to.
 */
export async function browserAuthorize(browser: Browser, authUrl: string, user: TestUser | undefined, loginExtra?: () => Record<string, string>): Promise<{ left: string; sawLogin: boolean; sawConsent: boolean }> {
  let step = await browser.follow(authUrl);
  let sawLogin = false;
  let sawConsent = false;
  if (!step.left && new URL(step.url).pathname === '/login') {
    if (!user) throw new Error('login needed');
    sawLogin = true;
    await browser.login(user, loginExtra?.() ?? {});
    const back = new URL(step.url).searchParams.get('return_to')!;
    step = await browser.follow(back);
  }
  if (!step.left && step.res.status === 200 && new URL(step.url).pathname.startsWith('/oidc/auth/')) {
    // The engine's self-submitting form (switching accounts logs the previous one out first): a browser runs its script.
    const page = await step.res.text();
    const action = /<form method="post" action="([^"]+)">/.exec(page)?.[1]?.replace(/&amp;/g, '&');
    const fields = Object.fromEntries([...page.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"\/>/g)].map((m) => [m[1]!, m[2]!]));
    if (!action) throw new Error(`unexpected page at ${step.url}`);
    step = await browser.follow(action, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields) });
  }
  if (!step.left && /\/oidc\/interaction\/[^/]+$/.test(new URL(step.url).pathname) && step.res.status === 200) {
    sawConsent = true;
    step = await browser.follow(`${new URL(step.url).pathname}/confirm`, { method: 'POST' });
  }
  if (!step.left) throw new Error(`the browser did not get back to the application: ${step.res.status} ${step.url}\n${(await step.res.text()).slice(0, 500)}`);
  return { left: step.left, sawLogin, sawConsent };
}

/** A back-channel logout receiver on a loopback port; `tokens` collects the logout tokens received. */
export async function logoutReceiver(t: TestContext): Promise<{ uri: string; tokens: string[]; server: Server; waitFor(n: number): Promise<void> }> {
  const tokens: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const token = new URLSearchParams(body).get('logout_token');
      if (token) tokens.push(token);
      res.writeHead(200).end();
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => {
    server.close(() => r());
    // The provider's fetch keeps its connection alive; close() alone would wait for it.
    server.closeAllConnections();
  }));
  return {
    uri: `http://127.0.0.1:${port}/backchannel-logout`,
    tokens,
    server,
    async waitFor(n: number) {
      // Polls for the notification; no wall-clock assertion, the test runner's timeout bounds it.
      while (tokens.length < n) await new Promise((r) => setTimeout(r, 25));
    },
  };
}

/** The confidential web application most OpenID tests sign in to, and where it is sent back. */
export const WEB_APP = {
  id: 'web-app',
  secret: 'web-app-secret-0123456789abcdef-XYZ',
  callback: 'http://app.example.test/callback',
  afterLogout: 'http://app.example.test/bye',
} as const;

/**
 * An OpenID server with WEB_APP registered (refresh tokens, consent skipped, a back-channel logout
 * receiver, a post-logout URI) plus `extraClients`; its openid-client configuration and the receiver.
 */
export async function startWebAppServer(t: TestContext, suite: AppSuite, extraClients: unknown[] = []) {
  const receiver = await logoutReceiver(t);
  const server = await startOidcServer(t, suite, [
    { client_id: WEB_APP.id, client_secret: WEB_APP.secret, redirect_uris: [WEB_APP.callback], post_logout_redirect_uris: [WEB_APP.afterLogout], grant_types: ['authorization_code', 'refresh_token'], backchannel_logout_uri: receiver.uri, skip_consent: true },
    ...extraClients,
  ]);
  return { server, receiver, config: await rp(server, WEB_APP.id, WEB_APP.secret) };
}
