/**
 * The provider session and the Twofold session the browser holds, with openid-client over HTTP:
 * another user logging in to the hosted pages in the same browser is who the application gets next
 * (not the provider session's first user), prompt=login or max_age in a signed-out browser asks
 * for one login, not two, and a fresh login moves the provider session to the new Twofold session.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { createUser, describeWithApp, enableTotp, nextTotpStep, type TestUser } from '../helpers/app.ts';
import { Browser, authorizationStart, browserAuthorize, rp, startOidcServer, type OidcServer } from '../helpers/oidc.ts';

const SECRET = 'web-app-secret-0123456789abcdef-XYZ';
const CALLBACK = 'http://app.example.test/callback';

async function setup(t: Parameters<typeof startOidcServer>[0], suite: Parameters<typeof startOidcServer>[1]) {
  const server = await startOidcServer(t, suite, [
    { client_id: 'web-app', client_secret: SECRET, redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'], skip_consent: true },
  ]);
  return { server, config: await rp(server, 'web-app', SECRET) };
}

/** One authorization in `browser`; the subject the application gets and whether a login was asked. */
async function signIn(server: OidcServer, config: client.Configuration, browser: Browser, user: TestUser | undefined, params: Record<string, string> = {}, loginExtra?: () => Record<string, string>) {
  const start = await authorizationStart(config, CALLBACK, params);
  const flow = await browserAuthorize(browser, start.url, user, loginExtra);
  const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
  return { sub: tokens.claims()!.sub, sawLogin: flow.sawLogin, acr: tokens.claims()!.acr };
}

/** An authorization with prompt=none: the subject the application gets, or the error it is sent. */
async function silentSignIn(config: client.Configuration, browser: Browser, params: Record<string, string> = {}): Promise<string | null> {
  const start = await authorizationStart(config, CALLBACK, { prompt: 'none', ...params });
  const back = new URL((await browser.follow(start.url)).left!);
  if (back.searchParams.has('error')) return back.searchParams.get('error');
  const tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
  return tokens.claims()!.sub;
}

describeWithApp('the provider session follows the Twofold session of the browser', (suite) => {
  test('after another user logs in to the hosted pages in the same browser, the application gets that user', async (t) => {
    const { server, config } = await setup(t, suite);
    const [alice, bob] = [await createUser(server.app), await createUser(server.app)];
    const browser = new Browser(server.base);
    assert.equal((await signIn(server, config, browser, alice)).sub, alice.uuid);
    await browser.login(bob);
    const next = await signIn(server, config, browser, bob);
    assert.equal(next.sub, bob.uuid, "the browser now holds Bob's session: the application must not be handed Alice");
    assert.equal(next.sawLogin, false, "Bob's hosted-page session is used as it is");
    // And Alice's provider session is over: ending Bob's Twofold session gives no single sign-on as Alice.
    const access = browser.cookies.get('access_token')!;
    assert.equal((await browser.request('/api/v1/auth-jwt/logout', { method: 'POST', headers: { authorization: `Bearer ${access}` } })).status, 204);
    assert.equal((await signIn(server, config, browser, alice)).sawLogin, true);
  });

  test('prompt=login and max_age=0 in a signed-out browser ask for exactly one login', async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    for (const params of [{ prompt: 'login' }, { max_age: '0' }] as Array<Record<string, string>>) {
      const result = await signIn(server, config, new Browser(server.base), user, params);
      assert.equal(result.sub, user.uuid, JSON.stringify(params));
      assert.equal(result.sawLogin, true, JSON.stringify(params));
    }
  });

  test('a fresh login (prompt=login) moves the provider session to the new Twofold session and ends the one it replaces', async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const start = await authorizationStart(config, CALLBACK, { scope: 'openid offline_access', prompt: 'consent' });
    const flow = await browserAuthorize(browser, start.url, user);
    const first = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
    const sidOf = () => decodeJwt(browser.cookies.get('access_token')!).sid as string;
    const oldSid = sidOf();
    const again = await signIn(server, config, browser, user, { prompt: 'login' });
    assert.equal(again.sawLogin, true);
    const newSid = sidOf();
    assert.notEqual(newSid, oldSid);
    const old = await server.deps.db.query<{ revoked_reason: string | null }>('SELECT revoked_reason FROM sessions WHERE id = $1', [oldSid]);
    assert.equal(old.rows[0]!.revoked_reason, 'superseded', 'the replaced session is ended, not left live with no cookie');
    // The application's earlier refresh token follows the provider session: revoking the current session ends it.
    const refreshed = await client.refreshTokenGrant(config, first.refresh_token!);
    assert.ok(refreshed.access_token);
    const latest = refreshed.refresh_token ?? first.refresh_token!;
    const revoke = await browser.request(`/api/v1/auth-jwt/sessions/${newSid}`, { method: 'DELETE', headers: { authorization: `Bearer ${browser.cookies.get('access_token')!}` } });
    assert.ok(revoke.status < 300, String(revoke.status));
    await assert.rejects(client.refreshTokenGrant(config, latest), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
  });

  test('prompt=none after the same user logs in to the hosted pages again: still signed in, on the new session; another user: login_required', async (t) => {
    const { server, config } = await setup(t, suite);
    const [alice, bob] = [await createUser(server.app), await createUser(server.app)];
    const browser = new Browser(server.base);
    await signIn(server, config, browser, alice);
    const silently = () => silentSignIn(config, browser);
    assert.equal(await silently(), alice.uuid);
    const before = decodeJwt(browser.cookies.get('access_token')!).sid as string;
    await browser.login(alice); // step-up on the account page, say
    assert.equal(await silently(), alice.uuid, 'the same user stays signed in to the application');
    const old = await server.deps.db.query<{ revoked_reason: string | null }>('SELECT revoked_reason FROM sessions WHERE id = $1', [before]);
    assert.equal(old.rows[0]!.revoked_reason, 'superseded', 'the provider session moved to the new session');
    await browser.login(bob);
    assert.equal(await silently(), 'login_required', 'another user in the browser: no silent sign-in as either');
  });

  test('a logout on the hosted pages ends single sign-on, also after a second login there with no authorization between', async (t) => {
    const { server, config } = await setup(t, suite);
    const alice = await createUser(server.app);
    const browser = new Browser(server.base);
    await signIn(server, config, browser, alice);
    await browser.login(alice); // a new session; the provider session is still linked to the first one
    // The account page's Log out: the cookies, from the page's origin.
    assert.equal((await browser.request('/api/v1/auth-jwt/logout', { method: 'POST' })).status, 204);
    for (const name of ['access_token', 'refresh_token', 'twofold_browser_session']) assert.ok(!browser.cookies.has(name), `${name} is cleared`);
    assert.ok(browser.cookies.has('_session'), "the provider's own session cookie stays: the provider session must end by itself");
    assert.equal(await silentSignIn(config, browser), 'login_required', 'logged out in this browser: no silent sign-in');
    assert.equal((await signIn(server, config, browser, alice)).sawLogin, true, 'an application asks for the password again');
  });

  test("another user's login, then that access cookie expires: the application is still not handed the earlier user", async (t) => {
    const { server, config } = await setup(t, suite);
    const [alice, bob] = [await createUser(server.app), await createUser(server.app)];
    const browser = new Browser(server.base);
    await signIn(server, config, browser, alice);
    await browser.login(bob);
    browser.cookies.delete('access_token'); // Max-Age (the access lifetime) has passed: the browser dropped it
    assert.equal(await silentSignIn(config, browser), 'login_required');
    const next = await signIn(server, config, browser, bob);
    assert.equal(next.sub, bob.uuid);
    // A browser-session cookie naming another session without its MAC counts as none.
    const aliceSid = (await server.deps.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [alice.uuid])).rows[0]?.id;
    browser.cookies.clear();
    browser.cookies.set('twofold_browser_session', `${aliceSid ?? 'none'}.${'0'.repeat(32)}`);
    assert.equal((await signIn(server, config, browser, alice)).sawLogin, true);
  });

  test('an application that asked for aal2 is not told aal2 after the browser logged in again with the password alone', async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const { secret } = await enableTotp(server, user);
    nextTotpStep(server.clock);
    const browser = new Browser(server.base);
    const first = await signIn(server, config, browser, user, { acr_values: 'aal2' }, () => ({ security_code: totpCodeAt(secret, server.clock()) }));
    assert.equal(first.acr, 'aal2');
    // The user removes the factor (from the aal2 session) and logs in again: a password-only session.
    assert.equal((await browser.request('/api/v1/auth-totp', { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ password: user.password }) })).status, 204);
    await browser.login(user);
    assert.equal(await silentSignIn(config, browser, { acr_values: 'aal2' }), 'login_required', 'no silent aal2 from an aal1 session');
    const again = await signIn(server, config, browser, user);
    assert.equal(again.acr, 'aal1', 'the login step ran with the session the browser has');
  });
});
