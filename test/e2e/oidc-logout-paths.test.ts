/**
 * Logging out ends what it should, whichever side it starts from, with openid-client over HTTP:
 * - a second login on the hosted pages moves the applications' provider session to the new session,
 *   so the account page's Log out still ends them (back-channel logout, tokens refused), and an
 *   application's logout still logs the browser out;
 * - a provider session past its own expiry is still announced when its Twofold session ends;
 * - the engine's self-submitting logout form, reachable by any site when the browser has no provider
 *   session, does not clear a Twofold session's cookies.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { createUser, describeWithApp, type TestUser } from '../helpers/app.ts';
import { createServer } from 'node:http';
import { freePort } from '../helpers/smtp-sink.ts';
import { Browser, authorizationStart, browserAuthorize, logoutReceiver, rp, startOidcServer, startWebAppServer, WEB_APP, type OidcServer } from '../helpers/oidc.ts';

const { callback: CALLBACK, afterLogout: AFTER_LOGOUT } = WEB_APP;
const setup = (t: Parameters<typeof startWebAppServer>[0], suite: Parameters<typeof startWebAppServer>[1]) => startWebAppServer(t, suite);

/** Signs `user` in to the application in `browser`, with a refresh token (offline_access). */
async function signIn(server: OidcServer, config: client.Configuration, user: TestUser, browser: Browser) {
  const start = await authorizationStart(config, CALLBACK, { scope: 'openid offline_access', prompt: 'consent' });
  const flow = await browserAuthorize(browser, start.url, user);
  return client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
}

const sidOf = (browser: Browser) => decodeJwt(browser.cookies.get('access_token')!).sid as string;

describeWithApp('logging out after a second login on the hosted pages', (suite) => {
  test("the account page's Log out ends the applications' session: back-channel logout, refresh token refused", async (t) => {
    const { server, receiver, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const tokens = await signIn(server, config, user, browser);
    const first = sidOf(browser);
    await browser.login(user); // a second session in the same browser
    const old = await server.deps.db.query<{ revoked_reason: string | null }>('SELECT revoked_reason FROM sessions WHERE id = $1', [first]);
    assert.equal(old.rows[0]!.revoked_reason, 'superseded', 'the session no cookie holds any more ends; its applications moved to the new one');
    assert.ok((await client.refreshTokenGrant(config, tokens.refresh_token!)).access_token, 'the application is still signed in');

    assert.equal((await browser.request('/api/v1/auth-jwt/logout', { method: 'POST' })).status, 204);
    await receiver.waitFor(1);
    assert.equal(decodeJwt(receiver.tokens[0]!).sid, tokens.claims()!.sid);
    await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
  });

  test("an application's logout logs the browser out of the hosted pages too", async (t) => {
    const { server, receiver, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const tokens = await signIn(server, config, user, browser);
    await browser.login(user);
    const second = browser.cookies.get('access_token')!;
    const page = await browser.request(client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: AFTER_LOGOUT }).href);
    const form = /<form id="op.logoutForm" method="post" action="([^"]+)"><input type="hidden" name="xsrf" value="([^"]+)"/.exec(await page.text());
    assert.ok(form, 'logout confirmation form');
    const done = await browser.request(form[1]!.replace(/&amp;/g, '&'), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ xsrf: form[2]!, logout: 'yes' }) });
    assert.equal(done.status, 303);
    await receiver.waitFor(1);
    assert.ok(!browser.cookies.has('access_token') && !browser.cookies.has('twofold_browser_session'), 'cookies cleared');
    assert.equal((await fetch(`${server.base}/api/v1/auth-jwt/user-info`, { headers: { authorization: `Bearer ${second}` } })).status, 401, 'the browser session ended');
    const again = await authorizationStart(config, CALLBACK);
    assert.equal((await browserAuthorize(browser, again.url, user)).sawLogin, true, 'the next sign-in asks for the password');
  });
});

describeWithApp('provider sessions and logout, other paths', (suite) => {
  test("a login presenting the browser cookie of a session ended meanwhile does not bring that session's applications back", async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const tokens = await signIn(server, config, user, browser);
    // Ended (a revocation, a first factor) before the sweep has taken its provider session.
    await server.deps.db.query("UPDATE sessions SET revoked_at = now(), revoked_reason = 'logout_all' WHERE id = $1", [sidOf(browser)]);
    await browser.login(user);
    const links = await server.deps.db.query<{ session_id: string }>('SELECT session_id FROM oidc_session_links');
    assert.ok(links.rows.every((l) => l.session_id !== sidOf(browser)), 'not moved to the new session');
    await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
    // Left to the sweep, which ends it here (the next test's server shares the database).
    await server.app.oidc.sweeper.run();
  });

  test('a provider session past its own expiry (the Twofold session slides, it does not) is still announced when the Twofold session ends', async (t) => {
    const { server, receiver, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const tokens = await signIn(server, config, user, browser);
    // Its 30 days are over; the expired-record purge runs.
    const uid = (await server.deps.db.query<{ provider_session_uid: string }>('SELECT provider_session_uid FROM oidc_session_links WHERE user_id = $1', [user.uuid])).rows[0]!.provider_session_uid;
    const stored = () => server.deps.db.query("SELECT 1 FROM oidc_payloads WHERE kind = 'Session' AND uid = $1", [uid]);
    await server.deps.db.query("UPDATE oidc_payloads SET expires_at = now() - interval '1 day' WHERE kind = 'Session' AND uid = $1", [uid]);
    const { purgeExpired } = await import('../../src/oidc/session-end.ts');
    await purgeExpired(server.deps);
    assert.equal((await stored()).rows.length, 1, 'a linked session is kept');
    assert.equal((await browser.request('/api/v1/auth-jwt/logout', { method: 'POST' })).status, 204);
    // Polls for this session's notification (the test runner's timeout bounds it).
    while (!receiver.tokens.some((token) => decodeJwt(token).sid === tokens.claims()!.sid)) await new Promise((r) => setTimeout(r, 25));
    assert.equal((await stored()).rows.length, 0, 'and ended with it');
  });

  test("the engine's logout form sent with no provider session (any site can send a browser there) leaves the Twofold cookies and session", async (t) => {
    const { server } = await setup(t, suite);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    await browser.login(user);
    const page = await browser.request('/oidc/session/end', { headers: { 'sec-fetch-site': 'cross-site' } });
    const html = await page.text();
    const action = /<form method="post" action="([^"]+)">/.exec(html)?.[1]?.replace(/&amp;/g, '&');
    assert.ok(action, html.slice(0, 300));
    const fields = Object.fromEntries([...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"\/>/g)].map((m) => [m[1]!, m[2]!]));
    // The page's own script submits it, from the service's origin.
    await browser.request(action, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields) });
    assert.ok(browser.cookies.has('access_token') && browser.cookies.has('refresh_token'), 'the cookies stay');
    assert.equal((await browser.request('/api/v1/auth-jwt/user-info')).status, 200);
  });

  // oidc-provider asks for redirect: 'manual' on these requests; this guards that our fetch hook keeps it.
  test('a back-channel logout endpoint that redirects: the logout token is not sent on to where it points', async (t) => {
    const elsewhere = await logoutReceiver(t);
    let hits = 0;
    const redirecting = createServer((_req, res) => {
      hits += 1;
      res.writeHead(307, { location: elsewhere.uri }).end();
    });
    const port = await freePort();
    await new Promise<void>((r) => redirecting.listen(port, '127.0.0.1', () => r()));
    t.after(() => new Promise<void>((r) => {
      redirecting.close(() => r());
      redirecting.closeAllConnections();
    }));
    const server = await startOidcServer(t, suite, [
      { client_id: WEB_APP.id, client_secret: WEB_APP.secret, redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'], backchannel_logout_uri: `http://127.0.0.1:${port}/logout`, skip_consent: true },
    ]);
    const config = await rp(server, WEB_APP.id, WEB_APP.secret);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    await signIn(server, config, user, browser);
    assert.equal((await browser.request('/api/v1/auth-jwt/logout', { method: 'POST' })).status, 204);
    // Polls until the notification was attempted (the test runner's timeout bounds it).
    while (hits === 0) await new Promise((r) => setTimeout(r, 25));
    await server.app.oidc.sweeper.run();
    assert.deepEqual(elsewhere.tokens, [], 'nothing reached the redirect target');
  });
});

describeWithApp('disconnecting an application', (suite) => {
  test('the application gets one back-channel logout for its sign-in at once, however many disconnects arrive, and none more when the session ends', { timeout: 120_000 }, async (t) => {
    const receiver = await logoutReceiver(t);
    // Consent asked (not skipped): only a consented application is listed and can be disconnected.
    const server = await startOidcServer(t, suite, [
      { client_id: WEB_APP.id, client_secret: WEB_APP.secret, redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'], backchannel_logout_uri: receiver.uri },
    ]);
    const config = await rp(server, WEB_APP.id, WEB_APP.secret);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const tokens = await signIn(server, config, user, browser);
    const headers = { authorization: `Bearer ${browser.cookies.get('access_token')}` };
    // Twenty at once (a double click, a retrying client): one disconnects, and only it sends the logout.
    const gone = await Promise.all(Array.from({ length: 20 }, () => fetch(`${server.base}/api/v1/account/connected-apps/${WEB_APP.id}`, { method: 'DELETE', headers })));
    assert.deepEqual(gone.map((r) => r.status).sort(), [204, ...Array<number>(19).fill(404)]);
    await receiver.waitFor(1);
    const logout = decodeJwt(receiver.tokens[0]!);
    assert.equal(logout.sid, tokens.claims()!.sid, 'the sid of the sign-in the application holds');
    assert.equal(logout.sub, user.uuid);
    await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');

    // The browser's session ends later: the application was told already and is in it no more.
    assert.equal((await browser.request('/api/v1/auth-jwt/logout', { method: 'POST' })).status, 204);
    await server.app.oidc.sweeper.run();
    assert.equal(receiver.tokens.length, 1, 'no second logout for the same sign-in');
  });
});
