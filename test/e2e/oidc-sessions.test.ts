/**
 * One session model between the JSON API and the OpenID provider, with openid-client over HTTP: a
 * provider login is a Twofold session; ending it (revocation, logout-all, RP-initiated logout) ends
 * the provider's tokens and sends back-channel logouts. Also prompt=login, acr_values=aal2 and
 * client_credentials.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { createUser, describeWithApp, enableTotp, nextTotpStep } from '../helpers/app.ts';
import { Browser, authorizationStart, browserAuthorize, logoutReceiver, rp, startOidcServer, startWebAppServer, WEB_APP } from '../helpers/oidc.ts';

const { secret: SECRET, callback: CALLBACK, afterLogout: AFTER_LOGOUT } = WEB_APP;

function setup(t: Parameters<typeof startOidcServer>[0], suite: Parameters<typeof startOidcServer>[1]) {
  return startWebAppServer(t, suite, [{ client_id: 'service', client_secret: SECRET, grant_types: ['client_credentials'], scope: 'openid' }]);
}

async function signIn(server: Awaited<ReturnType<typeof setup>>['server'], config: client.Configuration, user: Awaited<ReturnType<typeof createUser>>, browser = new Browser(server.base)) {
  const start = await authorizationStart(config, CALLBACK, { scope: 'openid profile offline_access', prompt: 'consent' });
  const flow = await browserAuthorize(browser, start.url, user);
  const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
  return { browser, tokens, flow };
}

describeWithApp('OpenID sessions are Twofold sessions', (suite) => {
  test('the provider login is listed at /sessions; revoking it there ends the refresh token and sends a back-channel logout', async (t) => {
    const { server, config, receiver } = await setup(t, suite);
    const user = await createUser(server.app);
    const { browser, tokens } = await signIn(server, config, user);
    const access = browser.cookies.get('access_token')!;
    const sessions = await (await fetch(`${server.base}/api/v1/auth-jwt/sessions`, { headers: { authorization: `Bearer ${access}` } })).json() as Array<{ id: string; current: boolean }>;
    const sid = (decodeJwt(access).sid as string);
    assert.ok(sessions.some((s) => s.id === sid), 'the hosted login behind the provider is a listed session');

    const res = await fetch(`${server.base}/api/v1/auth-jwt/sessions/${sid}`, { method: 'DELETE', headers: { authorization: `Bearer ${access}` } });
    assert.ok(res.status < 300, `revoke ${res.status}`);
    // Refused at once (the adapter checks the session), before any sweep.
    await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
    await receiver.waitFor(1);
    const logout = decodeJwt(receiver.tokens[0]!);
    assert.equal(logout.sub, user.uuid);
    assert.equal(logout.sid, tokens.claims()!.sid);
    assert.ok((logout.events as Record<string, unknown>)['http://schemas.openid.net/event/backchannel-logout']);
    assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, false);
  });

  test('logout-all ends every provider session of the user, and the next authorization asks for a login again', async (t) => {
    const { server, config, receiver } = await setup(t, suite);
    const user = await createUser(server.app);
    const a = await signIn(server, config, user);
    const b = await signIn(server, config, user);
    const access = a.browser.cookies.get('access_token')!;
    const res = await fetch(`${server.base}/api/v1/auth-jwt/logout-all`, { method: 'POST', headers: { authorization: `Bearer ${access}` } });
    assert.ok(res.status < 300, `logout-all ${res.status}`);
    for (const s of [a, b]) await assert.rejects(client.refreshTokenGrant(config, s.tokens.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
    await receiver.waitFor(2);
    assert.deepEqual(new Set(receiver.tokens.map((x) => decodeJwt(x).sid)), new Set([a.tokens.claims()!.sid, b.tokens.claims()!.sid]));
    const again = await browserAuthorize(a.browser, (await authorizationStart(config, CALLBACK)).url, user);
    assert.ok(again.sawLogin, 'no single sign-on from an ended session');
  });

  test('deactivating the user (admin) and a password change elsewhere end the provider sessions with back-channel logouts', async (t) => {
    const receiver = await logoutReceiver(t);
    const adminKey = 'admin-key-0123456789abcdef-0123456789';
    const server = await startOidcServer(t, suite, [
      { client_id: 'web-app', client_secret: SECRET, redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'], backchannel_logout_uri: receiver.uri, skip_consent: true },
    ], { ADMIN_API_KEY: adminKey });
    const config = await rp(server, 'web-app', SECRET);
    const alice = await createUser(server.app);
    const a = await signIn(server, config, alice);
    const res = await fetch(`${server.base}/api/v1/admin/users/${alice.uuid}`, { method: 'PATCH', headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ is_active: false }) });
    assert.equal(res.status, 200, await res.clone().text());
    await assert.rejects(client.refreshTokenGrant(config, a.tokens.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
    await receiver.waitFor(1);
    assert.equal(decodeJwt(receiver.tokens[0]!).sub, alice.uuid);

    const bob = await createUser(server.app);
    const b = await signIn(server, config, bob);
    const other = new Browser(server.base);
    await other.login(bob);
    const change = await fetch(`${server.base}/api/v1/user/password/change`, {
      method: 'POST', headers: { authorization: `Bearer ${other.cookies.get('access_token')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ current_password: bob.password, password1: 'a brand new passphrase 4471', password2: 'a brand new passphrase 4471' }),
    });
    assert.equal(change.status, 204);
    await assert.rejects(client.refreshTokenGrant(config, b.tokens.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
    await receiver.waitFor(2);
    assert.equal(decodeJwt(receiver.tokens[1]!).sub, bob.uuid);
  });

  test('dozens of concurrent refreshes with one refresh token: at most one succeeds, the others are invalid_grant, and the grant is revoked', async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const { tokens } = await signIn(server, config, user);
    const results = await Promise.allSettled(Array.from({ length: 24 }, () => client.refreshTokenGrant(config, tokens.refresh_token!)));
    const ok = results.filter((r) => r.status === 'fulfilled');
    assert.ok(ok.length <= 1, `${ok.length} refreshes succeeded`);
    for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as client.ResponseBodyError).error, 'invalid_grant');
    // The reuse revoked the grant: whatever the winner got is dead too.
    for (const r of ok) await assert.rejects(client.refreshTokenGrant(config, (r as PromiseFulfilledResult<client.TokenEndpointResponse>).value.refresh_token!));
  });

  test('RP-initiated logout: confirmation page, back-channel logout, the Twofold session ends, back to the registered URI', async (t) => {
    const { server, config, receiver } = await setup(t, suite);
    const user = await createUser(server.app);
    const { browser, tokens } = await signIn(server, config, user);
    const access = browser.cookies.get('access_token')!;
    const endUrl = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: AFTER_LOGOUT, state: 'st' });
    const page = await browser.request(endUrl.href);
    assert.equal(page.status, 200);
    const html = await page.text();
    const action = /<form id="op.logoutForm" method="post" action="([^"]+)"><input type="hidden" name="xsrf" value="([^"]+)"/.exec(html);
    assert.ok(action, 'logout confirmation form');
    const done = await browser.request(action[1]!.replace(/&amp;/g, '&'), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ xsrf: action[2]!, logout: 'yes' }) });
    assert.equal(done.status, 303);
    const back = new URL(done.headers.get('location')!);
    assert.equal(back.origin + back.pathname, AFTER_LOGOUT);
    assert.equal(back.searchParams.get('state'), 'st');
    await receiver.waitFor(1);
    assert.equal(decodeJwt(receiver.tokens[0]!).sid, tokens.claims()!.sid);
    assert.equal(browser.cookies.has('access_token'), false, 'Twofold cookies cleared');
    const me = await fetch(`${server.base}/api/v1/auth-jwt/user-info`, { headers: { authorization: `Bearer ${access}` } });
    assert.equal(me.status, 401, 'the Twofold session ended too');
    await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
  });

  test('a post_logout_redirect_uri that is not registered is not redirected to', async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const { browser, tokens } = await signIn(server, config, user);
    const endUrl = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: 'http://evil.example.test/' });
    const res = await browser.request(endUrl.href);
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('location'), null);
  });

  test('prompt=login and max_age=0 send a signed-in user through the login page again; auth_time moves', async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const first = await signIn(server, config, user);
    const authTime = first.tokens.claims()!.auth_time!;
    for (const params of [{ prompt: 'login' }, { max_age: '0' }] as Array<Record<string, string>>) {
      server.clock.advance(2);
      const start = await authorizationStart(config, CALLBACK, params);
      const flow = await browserAuthorize(first.browser, start.url, user);
      assert.ok(flow.sawLogin, `fresh login for ${JSON.stringify(params)}`);
      const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce, ...(params.max_age ? { maxAge: 0 } : {}) });
      assert.ok(tokens.claims()!.auth_time! > authTime);
    }
    // Without either, the session is reused (single sign-on).
    const sso = await browserAuthorize(first.browser, (await authorizationStart(config, CALLBACK)).url, user);
    assert.equal(sso.sawLogin, false);
  });

  test('id_token_hint for another user: the browser is asked to log in as that user, and refused instead of looping when it does not', async (t) => {
    const { server, config } = await setup(t, suite);
    const alice = await createUser(server.app);
    const bob = await createUser(server.app);
    const a = await signIn(server, config, alice);
    const browser = new Browser(server.base);
    await signIn(server, config, bob, browser);
    // Bob's browser, with Alice's ID token as the hint: a fresh login is asked for.
    const start = await authorizationStart(config, CALLBACK, { id_token_hint: a.tokens.id_token! });
    let step = await browser.follow(start.url);
    assert.equal(new URL(step.url).pathname, '/login');
    // Logging in as Bob again does not satisfy the hint: an error goes back to the application.
    await browser.login(bob);
    step = await browser.follow(new URL(step.url).searchParams.get('return_to')!);
    assert.equal(new URL(step.left!).searchParams.get('error'), 'login_required');
    // Logging in as Alice does.
    const again = await authorizationStart(config, CALLBACK, { id_token_hint: a.tokens.id_token! });
    const flow = await browserAuthorize(browser, again.url, alice);
    const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: again.verifier, expectedState: again.state, expectedNonce: again.nonce });
    assert.equal(tokens.claims()!.sub, alice.uuid);
    // The switch logged Bob's provider session out but kept Alice's fresh Twofold session in this browser.
    const me = await browser.request('/api/v1/auth-jwt/user-info');
    assert.equal(me.status, 200);
    assert.equal(((await me.json()) as { uuid?: string; sub?: string; username?: string }).username, alice.username);
  });

  test('acr_values=aal2: an aal1 session must log in with its second factor; a user without one is refused', async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const { secret } = await enableTotp(server, user);
    nextTotpStep(server.clock);
    const browser = new Browser(server.base);
    // An aal1 session cannot exist for a user with TOTP through the login API, so start without TOTP:
    const plain = await createUser(server.app);
    const refused = await browserAuthorize(browser, (await authorizationStart(config, CALLBACK, { acr_values: 'aal2' })).url, plain);
    const error = new URL(refused.left);
    assert.equal(error.searchParams.get('error'), 'unmet_authentication_requirements');
    const start = await authorizationStart(config, CALLBACK, { acr_values: 'aal2' });
    const flow = await browserAuthorize(new Browser(server.base), start.url, user, () => ({ security_code: totpCodeAt(secret, server.clock()) }));
    const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
    assert.equal(tokens.claims()!.acr, 'aal2');
  });

  test('client_credentials gives a service token without a user; the client has no redirect URI to authorize with', async (t) => {
    const { server } = await setup(t, suite);
    const svc = await rp(server, 'service', SECRET);
    const token = await client.clientCredentialsGrant(svc, { scope: 'openid' });
    assert.ok(token.access_token);
    assert.equal(token.refresh_token, undefined);
    assert.equal(token.id_token, undefined);
    const intro = await client.tokenIntrospection(svc, token.access_token);
    assert.equal(intro.active, true);
    assert.equal(intro.client_id, 'service');
    assert.equal(intro.sub, undefined);
    const res = await new Browser(server.base).request(client.buildAuthorizationUrl(svc, { redirect_uri: CALLBACK, scope: 'openid', code_challenge: 'a'.repeat(43), code_challenge_method: 'S256' }).href);
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('location'), null);
  });
});
