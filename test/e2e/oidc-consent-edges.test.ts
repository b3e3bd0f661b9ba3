/**
 * Two consent edges, with the real openid-client relying party:
 * - a native client (app-scheme redirect) marked skip_consent still asks the user every time: any app
 *   on the device may claim the scheme (RFC 8252 §8.6), and skip_consent trusts only the real one;
 * - "Allow" on a consent page opened before the same user logged in again (another tab) neither
 *   revokes the browser's live session nor links the provider session to the old, revoked one.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { createUser, describeWithApp } from '../helpers/app.ts';
import { Browser, authorizationStart, rp, startOidcServer, type OidcServer } from '../helpers/oidc.ts';

const CALLBACK = 'http://app.example.test/callback';
const SECRET = 'consent-app-secret-0123456789abcdef';
const APP = { client_id: 'consent-app', client_secret: SECRET, redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'] };
const NATIVE = { client_id: 'notes', redirect_uris: ['com.example.notes:/cb'], token_endpoint_auth_method: 'none', skip_consent: true, grant_types: ['authorization_code', 'refresh_token'] };

async function promptOf(server: OidcServer, uid: string): Promise<string | undefined> {
  const r = await server.deps.db.query<{ name: string }>("SELECT payload->'prompt'->>'name' AS name FROM oidc_payloads WHERE kind = 'Interaction' AND id = $1", [server.deps.tokenHasher.hash('oidc-id', uid)]);
  return r.rows[0]?.name;
}

/** Follows the authorization until a consent page is shown (200, not answered by itself); returns its path. */
async function untilConsentPage(server: OidcServer, browser: Browser, url: string): Promise<string | undefined> {
  let next: string | null = url;
  for (let i = 0; i < 10 && next; i++) {
    const u = new URL(next, browser.base);
    const uid = /^\/oidc\/interaction\/([^/]+)$/.exec(u.pathname)?.[1];
    const res = await browser.request(u.href);
    if (uid && res.status === 200 && (await promptOf(server, uid)) === 'consent') return u.pathname;
    next = res.headers.get('location');
  }
  return undefined;
}

const sidOf = (b: Browser) => decodeJwt(b.cookies.get('access_token')!).sid as string;

describeWithApp('OpenID consent edges', (suite) => {
  test('a native client with skip_consent: the signed-in user still sees the consent page; no code leaves without it', async (t) => {
    const server = await startOidcServer(t, suite, [NATIVE]);
    const config = await rp(server, 'notes');
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    await browser.login(user);
    const asks: Record<string, string>[] = [{ scope: 'openid email' }, { scope: 'openid offline_access', prompt: 'consent' }];
    for (const params of asks) {
      const start = await authorizationStart(config, 'com.example.notes:/cb', params);
      const page = await untilConsentPage(server, browser, start.url);
      assert.ok(page, `consent asked for ${JSON.stringify(params)}`);
      // The page names where the answer goes: the app's scheme (an app-scheme URI has no host).
      assert.match(await (await browser.request(page)).text(), /\(com\.example\.notes\)/);
    }
  });

  test('Allow on a consent page opened before a second login of the same user: the live session stays, the code works', async (t) => {
    const server = await startOidcServer(t, suite, [APP]);
    const config = await rp(server, APP.client_id, SECRET);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    await browser.login(user);
    const start = await authorizationStart(config, CALLBACK, { scope: 'openid' });
    const consentPath = await untilConsentPage(server, browser, start.url);
    assert.ok(consentPath);
    // The same user logs in again in this browser (another tab); then the first tab's page is answered.
    await browser.login(user);
    const live = sidOf(browser);
    const res = await browser.request(`${consentPath}/confirm`, { method: 'POST' });
    const step = await browser.follow(new URL(res.headers.get('location')!, browser.base).href);
    assert.ok(step.left?.startsWith(CALLBACK), step.left ?? '');
    const session = (await server.deps.db.query<{ revoked_at: Date | null }>('SELECT revoked_at FROM sessions WHERE id = $1', [live])).rows[0]!;
    assert.equal(session.revoked_at, null, 'the browser\'s live session was revoked');
    assert.equal((await browser.request('/api/v1/auth-jwt/user-info')).status, 200);
    const tokens = await client.authorizationCodeGrant(config, new URL(step.left!), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
    assert.ok(tokens.access_token);
  });
});
