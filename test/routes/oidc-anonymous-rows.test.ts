/**
 * Requests anyone can send without logging in make the OpenID engine store rows: a bare logout request
 * saves a provider session (the logout form's secret), an authorization request with a public client's
 * public values an interaction holding its parameters. Such sessions live minutes, not a month, and
 * both requests are counted per IP (`oidc:ip`), while the endpoints relying parties' servers call are not.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { pageCsp } from '../../src/oidc/page-policy.ts';
import { ANONYMOUS_SESSION_TTL_SECONDS } from '../../src/oidc/provider.ts';
import { createUser, describeWithApp, type AppSuite } from '../helpers/app.ts';
import { Browser, WEB_APP, browserAuthorize, authorizationStart, startOidcServer, startWebAppServer, type OidcServer } from '../helpers/oidc.ts';

const SPA = { client_id: 'spa', redirect_uris: ['http://spa.example.test/cb'], token_endpoint_auth_method: 'none' };
const SERVICE = { client_id: 'service', client_secret: 'service-secret-0123456789abcdef-XYZ', grant_types: ['client_credentials'] };
// RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE=2: the quota is four times that (limiter-flexible.ts).
const QUOTA = 8;

/** A valid authorization request of the public client; `marker` is its state, to find its rows. */
function authUrl(base: string, marker: string, path = '/oidc/auth'): string {
  const q = new URLSearchParams({
    client_id: SPA.client_id, redirect_uri: SPA.redirect_uris[0]!, response_type: 'code', scope: 'openid',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', state: marker, nonce: 'n',
  });
  return `${base}${path}?${q}`;
}

async function interactionRows(server: OidcServer, marker: string): Promise<number> {
  const { rows } = await server.deps.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM oidc_payloads WHERE kind = 'Interaction' AND payload->'params'->>'state' = $1`, [marker]);
  return rows[0]!.n;
}

async function sessionExpiries(server: OidcServer, where: string, params: unknown[] = []): Promise<Date[]> {
  const { rows } = await server.deps.db.query<{ expires_at: Date }>(`SELECT expires_at FROM oidc_payloads WHERE kind = 'Session' AND ${where}`, params);
  return rows.map((r) => r.expires_at);
}

function limited(suite: AppSuite, t: Parameters<typeof startOidcServer>[0], env: Record<string, string> = {}) {
  return startOidcServer(t, suite, [SPA, SERVICE], { RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '2', ...env });
}

describeWithApp('rows the OpenID engine stores for anonymous requests', (suite) => {
  test('a bare logout request leaves a provider session of minutes; a login gives it the full lifetime', async (t) => {
    const { server, config } = await startWebAppServer(t, suite);
    const ttl = server.deps.config.oidc.refreshTokenTtlSeconds;
    assert.ok(ttl > ANONYMOUS_SESSION_TTL_SECONDS);
    const startedAt = new Date();
    const before = Date.now();
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`${server.base}/oidc/session/end`)).status, 200);
    const after = Date.now();
    const anonymous = await sessionExpiries(server, 'account_id IS NULL AND expires_at > $1', [startedAt]);
    assert.equal(anonymous.length, 3, 'one session row per bare request');
    for (const expiry of anonymous) {
      assert.ok(expiry.getTime() >= before + ANONYMOUS_SESSION_TTL_SECONDS * 1000 && expiry.getTime() <= after + ANONYMOUS_SESSION_TTL_SECONDS * 1000, `short-lived: ${expiry.toISOString()}`);
    }

    // A browser that opened the logout page first, then signs in to an application: the same provider
    // session gains an account, and is saved with the full lifetime.
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    assert.equal((await browser.request('/oidc/session/end')).status, 200);
    const loginFrom = Date.now();
    const { url } = await authorizationStart(config, WEB_APP.callback);
    await browserAuthorize(browser, url, user);
    const loginTo = Date.now();
    const logged = await sessionExpiries(server, 'account_id = $1', [user.uuid]);
    assert.equal(logged.length, 1);
    assert.ok(logged[0]!.getTime() >= loginFrom + ttl * 1000 && logged[0]!.getTime() <= loginTo + ttl * 1000, `full lifetime: ${logged[0]!.toISOString()}`);
  });

  test('authorization requests over the per-IP quota get 429 and store nothing more', async (t) => {
    const server = await limited(suite, t);
    const marker = `flood-${Date.now()}`;
    const statuses: number[] = [];
    for (let i = 0; i < QUOTA; i++) statuses.push((await fetch(authUrl(server.base, marker), { redirect: 'manual' })).status);
    assert.deepEqual(statuses, Array(QUOTA).fill(303));
    assert.equal(await interactionRows(server, marker), QUOTA);

    const refused = await fetch(authUrl(server.base, marker), { redirect: 'manual' });
    assert.equal(refused.status, 429);
    // A browser page, as the engine's other errors there: the error page with its security headers.
    assert.match(refused.headers.get('content-type') ?? '', /^text\/html/);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    assert.equal(refused.headers.get('content-security-policy'), pageCsp([]));
    assert.equal(refused.headers.get('cache-control'), 'no-store');
    const body = await refused.text();
    assert.match(body, /temporarily_unavailable/);
    assert.match(body, /Too many sign-in requests/);
    // The spellings the engine's router also takes (any ASCII case, one trailing slash, HEAD), and logout.
    for (const [path, method] of [['/oidc/AUTH/', 'GET'], ['/oidc/auth', 'HEAD'], ['/oidc/session/end', 'GET'], ['/oidc/session/END/', 'GET']] as const) {
      const res = await fetch(authUrl(server.base, marker, path), { method, redirect: 'manual' });
      assert.equal(res.status, 429, `${method} ${path}`);
    }
    assert.equal(await interactionRows(server, marker), QUOTA, 'no interaction stored past the quota');
  });

  test('forty simultaneous authorization and logout requests from one IP: exactly the quota gets through', async (t) => {
    const server = await limited(suite, t);
    const marker = `burst-${Date.now()}`;
    const before = await sessionExpiries(server, 'account_id IS NULL');
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => fetch(i % 2 ? `${server.base}/oidc/session/end` : authUrl(server.base, marker), { redirect: 'manual' }).then(async (r) => {
      await r.arrayBuffer();
      return r.status;
    })));
    const through = answers.filter((status) => status !== 429);
    assert.equal(through.length, QUOTA, `answers: ${answers.join(' ')}`);
    assert.equal(answers.length - through.length, 40 - QUOTA);
    // What got through stored one row each (an interaction, or a provider session); nothing else did.
    const sessions = (await sessionExpiries(server, 'account_id IS NULL')).length - before.length;
    assert.equal((await interactionRows(server, marker)) + sessions, QUOTA);
  });

  test('with RATE_LIMIT_DISABLED=true authorization requests are not counted', async (t) => {
    const server = await limited(suite, t, { RATE_LIMIT_DISABLED: 'true' });
    const marker = `unlimited-${Date.now()}`;
    for (let i = 0; i < QUOTA + 4; i++) assert.equal((await fetch(authUrl(server.base, marker), { redirect: 'manual' })).status, 303);
    assert.equal(await interactionRows(server, marker), QUOTA + 4);
  });

  test('discovery, JWKS, token, userinfo and introspection are not counted by it', async (t) => {
    const server = await limited(suite, t);
    for (let i = 0; i <= QUOTA; i++) await fetch(authUrl(server.base, `exhaust-${i}`), { redirect: 'manual' });
    assert.equal((await fetch(authUrl(server.base, 'exhausted'), { redirect: 'manual' })).status, 429);

    const rp = await client.discovery(new URL(server.base), SERVICE.client_id, SERVICE.client_secret, client.ClientSecretBasic(SERVICE.client_secret), { execute: [client.allowInsecureRequests] });
    for (let i = 0; i < QUOTA + 2; i++) {
      assert.equal((await fetch(`${server.base}/.well-known/openid-configuration`)).status, 200);
      assert.equal((await fetch(`${server.base}/.well-known/jwks.json`)).status, 200);
      const tokens = await client.clientCredentialsGrant(rp, { scope: 'openid' });
      assert.ok(tokens.access_token);
      assert.equal((await client.tokenIntrospection(rp, tokens.access_token)).active, true);
      // No user behind a client-credentials token: refused, but by userinfo itself, not the quota.
      assert.equal((await fetch(`${server.base}/oidc/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } })).status, 401);
    }
  });
});
