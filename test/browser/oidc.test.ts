/**
 * Issue 11 in Chromium: an application registered in OIDC_CLIENTS_FILE (a real relying party built on
 * openid-client, on its own port) signs a user in through the hosted login with TOTP, refreshes, and
 * logs out (RP-initiated) with a back-channel notification. The service is the real process.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import * as client from 'openid-client';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { freePort, launchBrowser, screenshot, startService, type Service } from './helpers.ts';

const SECRET = 'browser-rp-secret-0123456789abcdefXYZ';
const PASSWORD = 'amber meadow lighthouse 5521';
const APP_REDIRECT = 'com.example.notes:/oauth/callback';

let service: Service;
let browser: Browser;
let rpServer: Server;
let rpBase: string;
const logoutTokens: string[] = [];
const results: Array<{ id_token: string; refresh_token?: string; claims: Record<string, unknown> }> = [];

/** The relying party: /login starts code + PKCE, /callback finishes it, /bc receives back-channel logouts. */
async function startRelyingParty(issuer: string, port: number): Promise<Server> {
  const config = await client.discovery(new URL(issuer), 'wiki', SECRET, client.ClientSecretBasic(SECRET), { execute: [client.allowInsecureRequests] });
  let pending: { verifier: string; state: string; nonce: string } | undefined;
  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url!, `http://127.0.0.1:${port}`);
      if (url.pathname === '/login') {
        pending = { verifier: client.randomPKCECodeVerifier(), state: client.randomState(), nonce: client.randomNonce() };
        const target = client.buildAuthorizationUrl(config, {
          redirect_uri: `http://127.0.0.1:${port}/callback`,
          // offline_access needs prompt=consent (OpenID Connect Core §11); /login?sso=1 asks for neither.
          ...(url.searchParams.has('sso') ? { scope: 'openid profile email' } : { scope: 'openid profile email offline_access', prompt: 'consent' }),
          code_challenge: await client.calculatePKCECodeChallenge(pending.verifier), code_challenge_method: 'S256', state: pending.state, nonce: pending.nonce,
        });
        res.writeHead(302, { location: target.href }).end();
      } else if (url.pathname === '/callback') {
        const tokens = await client.authorizationCodeGrant(config, url, { pkceCodeVerifier: pending!.verifier, expectedState: pending!.state, expectedNonce: pending!.nonce });
        const claims = tokens.claims()! as Record<string, unknown>;
        results.push({ id_token: tokens.id_token!, refresh_token: tokens.refresh_token, claims });
        // Profile claims come from userinfo (the ID token of the code flow carries the openid ones).
        const info = await client.fetchUserInfo(config, tokens.access_token, String(claims.sub));
        res.writeHead(200, { 'content-type': 'text/html' }).end(`<h1>Welcome ${String(info.preferred_username)}</h1><p id="acr">${String(claims.acr)}</p>`);
      } else if (url.pathname === '/bc' && req.method === 'POST') {
        let body = '';
        req.on('data', (c) => (body += c));
        req.on('end', () => {
          logoutTokens.push(new URLSearchParams(body).get('logout_token') ?? '');
          res.writeHead(200).end();
        });
      } else if (url.pathname === '/bye') {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>Signed out of the wiki</h1>');
      } else {
        res.writeHead(404).end();
      }
    })().catch((e: unknown) => res.writeHead(500).end(String(e)));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return server;
}

before(async () => {
  const rpPort = await freePort();
  rpBase = `http://127.0.0.1:${rpPort}`;
  const dir = await mkdtemp(join(tmpdir(), 'twofold-oidc-browser-'));
  const file = join(dir, 'clients.json');
  await writeFile(file, JSON.stringify([{
    client_id: 'wiki', client_secret: SECRET, client_name: 'Team wiki', redirect_uris: [`${rpBase}/callback`],
    post_logout_redirect_uris: [`${rpBase}/bye`], grant_types: ['authorization_code', 'refresh_token'], backchannel_logout_uri: `${rpBase}/bc`,
  }, {
    // A native application (RFC 8252): public, PKCE, redirected to its own URL scheme.
    client_id: 'notes-app', client_name: 'Notes app', token_endpoint_auth_method: 'none', redirect_uris: [APP_REDIRECT],
    post_logout_redirect_uris: [APP_REDIRECT], grant_types: ['authorization_code'],
  }]));
  service = await startService({ OIDC_CLIENTS_FILE: file }, 'oidc-service.log');
  rpServer = await startRelyingParty(service.baseUrl, rpPort);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  rpServer?.closeAllConnections();
  await new Promise<void>((r) => (rpServer ? rpServer.close(() => r()) : r()));
  await service?.stop();
});

async function api(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${service.baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json', ...headers }, body: JSON.stringify(body) });
}

test('sign in to an application with password + TOTP on the hosted pages, consent, refresh, RP-initiated logout with back-channel notification', { timeout: 180_000 }, async () => {
  // A user with TOTP, set up through the API (the enrolment pages have their own tests).
  assert.equal((await api('/api/v1/user', { username: 'dana', email: 'dana@example.com', password1: PASSWORD, password2: PASSWORD })).status, 201);
  const qr = await api('/api/v1/auth-totp/qrcode', { username: 'dana', password: PASSWORD });
  const secret = ((await qr.json()) as { secret: string }).secret;
  // Activate with the previous step's code (accepted within ±1 step) so the browser's current code is not a replay.
  const activation = await api('/api/v1/auth-jwt/login', { username: 'dana', password: PASSWORD, security_code: totpCodeAt(secret, new Date(Date.now() - 30_000)) });
  assert.equal(activation.status, 200, await activation.clone().text());

  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(`${rpBase}/login`);
  await page.waitForURL(/\/login\?return_to=/);
  await page.getByLabel('Username or email').fill('dana');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByLabel('Security code').fill(totpCodeAt(secret, new Date()));
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByRole('heading', { name: 'Allow Team wiki?' }).waitFor();
  await screenshot(page, 'oidc-consent');
  await page.getByRole('button', { name: 'Allow' }).click();
  await page.getByRole('heading', { name: 'Welcome dana' }).waitFor();
  assert.equal(await page.locator('#acr').textContent(), 'aal2');

  const [signedIn] = results;
  assert.ok(signedIn);
  assert.ok(Array.isArray(signedIn.claims.amr) && (signedIn.claims.amr as string[]).includes('otp'));
  const jwks = createRemoteJWKSet(new URL(`${service.baseUrl}/.well-known/jwks.json`));
  await jwtVerify(signedIn.id_token, jwks, { issuer: service.baseUrl, audience: 'wiki', algorithms: ['RS256'] });

  // The application refreshes (rotation) with its own client.
  const config = await client.discovery(new URL(service.baseUrl), 'wiki', SECRET, client.ClientSecretBasic(SECRET), { execute: [client.allowInsecureRequests] });
  const refreshed = await client.refreshTokenGrant(config, signedIn.refresh_token!);
  assert.ok(refreshed.refresh_token && refreshed.refresh_token !== signedIn.refresh_token);

  // A second visit signs in without asking anything (single sign-on, remembered consent).
  await page.goto(`${rpBase}/login?sso=1`);
  await page.getByRole('heading', { name: 'Welcome dana' }).waitFor();

  // A new browser session (the provider's session cookie gone) whose access token expired (its cookie
  // gone too) but whose refresh cookie lives: the login page renews the Twofold session by itself and
  // the application gets its user back without the form.
  const cookies = await context.cookies();
  await context.clearCookies();
  await context.addCookies(cookies.filter((c) => c.name !== 'access_token' && !c.name.startsWith('_session')));
  const seen: string[] = [];
  page.on('request', (r) => seen.push(new URL(r.url()).pathname));
  await page.goto(`${rpBase}/login?sso=1`);
  await page.getByRole('heading', { name: 'Welcome dana' }).waitFor();
  assert.ok(seen.includes('/login') && seen.includes('/api/v1/auth-jwt/refresh'), `went through the login page's renewal: ${seen.join(' ')}`);
  assert.ok(!seen.includes('/api/v1/auth-jwt/login'), 'no password asked');
  assert.equal(results.length, 3);

  // RP-initiated logout: confirmation page, then back to the application; it is told on the back channel
  // for this browser's provider session at once, and for the earlier one (same Twofold session) by the sweep.
  const latest = results.at(-1)!;
  await page.goto(client.buildEndSessionUrl(config, { id_token_hint: latest.id_token, post_logout_redirect_uri: `${rpBase}/bye` }).href);
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Signed out of the wiki' }).waitFor();
  assert.ok(logoutTokens.length >= 1, 'back-channel logout received before the redirect');
  assert.equal(decodeJwt(logoutTokens[0]!).sid, latest.claims.sid);
  // Polls; the test's timeout bounds it (no wall-clock assertion).
  while (logoutTokens.length < 2) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(new Set(logoutTokens.map((x) => decodeJwt(x).sid)), new Set([latest.claims.sid, signedIn.claims.sid]));
  await assert.rejects(client.refreshTokenGrant(config, refreshed.refresh_token!));
  // Logged out of Twofold too: the account page sends the browser to the login page.
  await page.goto(`${service.baseUrl}/account`);
  await page.waitForURL(/\/login/);
  await context.close();
});

test('a native application gets its code at its own URL scheme: the consent form may lead there (CSP form-action), and the code redeems', { timeout: 120_000 }, async () => {
  assert.equal((await api('/api/v1/user', { username: 'erin', email: 'erin@example.com', password1: PASSWORD, password2: PASSWORD })).status, 201);
  const config = await client.discovery(new URL(service.baseUrl), 'notes-app', undefined, client.None(), { execute: [client.allowInsecureRequests] });
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const start = client.buildAuthorizationUrl(config, {
    redirect_uri: APP_REDIRECT, scope: 'openid profile', state,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  // Where the consent's redirects end: Chromium either requests the app's URL (and, headless with no app
  // for the scheme, aborts it) or refuses it for the page's CSP and says so on the console.
  const verdict = new Promise<{ allowed: string } | { refused: string }>((resolve) => {
    page.on('request', (r) => {
      if (r.url().startsWith('com.example.notes:')) resolve({ allowed: r.url() });
    });
    page.on('console', (m) => {
      if (m.text().includes('Content Security Policy')) resolve({ refused: m.text() });
    });
  });
  await page.goto(start.href);
  await page.getByLabel('Username or email').fill('erin');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Allow Notes app?' }).waitFor();
  await page.getByRole('button', { name: 'Allow' }).click();
  const outcome = await verdict;
  assert.ok('allowed' in outcome, `the browser refused the redirect to the app: ${JSON.stringify(outcome)}`);
  // The app redeems the code with its PKCE verifier.
  const tokens = await client.authorizationCodeGrant(config, new URL(outcome.allowed), { pkceCodeVerifier: verifier, expectedState: state });
  assert.ok(tokens.id_token);
  await context.close();
});
