/**
 * The OpenID provider after review: id_token_hint signed by a key the ring still publishes (after a
 * rotation), RP-initiated logout audited as session.revoked, acr_values as a preference list,
 * introspection of a client's own tokens only, and client metadata the engine can use (native
 * clients with app schemes; back-channel logout URIs it can call); disconnecting an application
 * that was never connected changes nothing; no live bearer value in the provider's tables; an unknown
 * path under /oidc/ answers the service's not_found problem, the engine's own errors stay its own.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import * as client from 'openid-client';
import { SignJWT, decodeProtectedHeader } from 'jose';
import { createUser, describeWithApp } from '../helpers/app.ts';
import { Browser, authorizationStart, browserAuthorize, logoutReceiver, rp, startOidcServer, type OidcServer } from '../helpers/oidc.ts';

const SECRET = 'web-app-secret-0123456789abcdef-XYZ';
const CALLBACK = 'http://app.example.test/callback';
const AFTER_LOGOUT = 'http://app.example.test/bye';
const ADMIN_KEY = 'admin-key-0123456789abcdef-0123456789';
const admin = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };

async function setup(t: Parameters<typeof startOidcServer>[0], suite: Parameters<typeof startOidcServer>[1]) {
  const receiver = await logoutReceiver(t);
  const server = await startOidcServer(t, suite, [
    { client_id: 'web-app', client_secret: SECRET, redirect_uris: [CALLBACK], post_logout_redirect_uris: [AFTER_LOGOUT], grant_types: ['authorization_code', 'refresh_token'], backchannel_logout_uri: receiver.uri, skip_consent: true },
    { client_id: 'other-app', client_secret: `${SECRET}-other`, redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'], skip_consent: true },
  ], { ADMIN_API_KEY: ADMIN_KEY });
  return { server, config: await rp(server, 'web-app', SECRET), receiver };
}

async function signIn(server: OidcServer, config: client.Configuration, user: Awaited<ReturnType<typeof createUser>>, params: Record<string, string> = {}) {
  const browser = new Browser(server.base);
  const start = await authorizationStart(config, CALLBACK, { scope: 'openid profile offline_access', prompt: 'consent', ...params });
  const flow = await browserAuthorize(browser, start.url, user);
  const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
  return { browser, tokens };
}

/** RP-initiated logout with `idToken` as the hint: the confirmation page (or the refusal) and, when confirmed, the redirect. */
async function rpLogout(browser: Browser, config: client.Configuration, idToken: string): Promise<{ page: Response; html: string; done?: Response }> {
  const page = await browser.request(client.buildEndSessionUrl(config, { id_token_hint: idToken, post_logout_redirect_uri: AFTER_LOGOUT, state: 'st' }).href);
  const html = await page.text();
  const form = /<form id="op.logoutForm" method="post" action="([^"]+)"><input type="hidden" name="xsrf" value="([^"]+)"/.exec(html);
  if (page.status !== 200 || !form) return { page, html };
  const done = await browser.request(form[1]!.replace(/&amp;/g, '&'), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ xsrf: form[2]!, logout: 'yes' }) });
  return { page, html, done };
}

describeWithApp('OpenID provider: review fixes', (suite) => {
  test('after a key rotation an ID token of the previous key is still a valid id_token_hint (authorization, RP-initiated logout); one of an unknown key is not', async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const { browser, tokens } = await signIn(server, config, user);
    const oldKid = decodeProtectedHeader(tokens.id_token!).kid;
    const rotated = await fetch(`${server.base}/api/v1/admin/keys/rotate`, { method: 'POST', headers: { authorization: admin.authorization } });
    assert.ok(rotated.status < 300, `rotate ${rotated.status}`);
    server.clock.advance(11 * 60);
    // The provider signs with the new key now...
    const again = await signIn(server, config, user);
    assert.notEqual(decodeProtectedHeader(again.tokens.id_token!).kid, oldKid, 'the rotation took effect');

    // ...and still accepts the old key's ID token as a hint.
    const silent = await authorizationStart(config, CALLBACK, { id_token_hint: tokens.id_token!, prompt: 'none', scope: 'openid profile' });
    const step = await browser.follow(silent.url);
    assert.ok(step.left, `back to the application: ${step.res.status}`);
    assert.equal(new URL(step.left).searchParams.get('error'), null);
    assert.ok(new URL(step.left).searchParams.get('code'));

    // A hint signed by a key the ring never published is refused, whatever kid it names.
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    for (const kid of ['unknown-kid', oldKid!]) {
      const forged = await new SignJWT({ sid: tokens.claims()!.sid })
        .setProtectedHeader({ alg: 'RS256', kid }).setIssuer(server.base).setAudience('web-app').setSubject(user.uuid).setIssuedAt().setExpirationTime('1h')
        .sign(privateKey);
      const refused = await rpLogout(browser, config, forged);
      assert.equal(refused.page.status, 400, kid);
      assert.match(refused.html, /could not validate id_token_hint/);
    }

    const { page, done } = await rpLogout(browser, config, tokens.id_token!);
    assert.equal(page.status, 200);
    assert.equal(done?.status, 303);
    const back = new URL(done.headers.get('location')!);
    assert.equal(back.origin + back.pathname, AFTER_LOGOUT);
    assert.equal(back.searchParams.get('state'), 'st');
  });

  test('RP-initiated logout records session.revoked (sid, reason oidc_logout, the user as actor) with the revocation', async (t) => {
    const { server, config, receiver } = await setup(t, suite);
    const user = await createUser(server.app);
    const { browser, tokens } = await signIn(server, config, user);
    const sid = (JSON.parse(Buffer.from(browser.cookies.get('access_token')!.split('.')[1]!, 'base64url').toString()) as { sid: string }).sid;
    const { done } = await rpLogout(browser, config, tokens.id_token!);
    assert.equal(done?.status, 303);
    await receiver.waitFor(1);
    const rows = (await server.deps.db.query<{ user_id: string; actor_kind: string; actor_id: string; ip: string; data: { sid: string; reason: string } }>(
      "SELECT user_id, actor_kind, actor_id, ip, data FROM audit_log WHERE type = 'session.revoked' AND user_id = $1 ORDER BY id", [user.uuid],
    )).rows;
    assert.deepEqual(rows.map((r) => [r.user_id, r.actor_kind, r.actor_id, r.ip, r.data.sid, r.data.reason]), [[user.uuid, 'user', user.uuid, '127.0.0.1', sid, 'oidc_logout']]);
    const revoked = (await server.deps.db.query<{ revoked_reason: string }>('SELECT revoked_reason FROM sessions WHERE id = $1', [sid])).rows[0];
    assert.equal(revoked?.revoked_reason, 'oidc_logout');
  });

  test('acr_values is a preference list: "aal1 aal2" lets a user without a second factor sign in (acr aal1); "aal2" alone still refuses', async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const start = await authorizationStart(config, CALLBACK, { acr_values: 'aal1 aal2' });
    const flow = await browserAuthorize(new Browser(server.base), start.url, user);
    assert.equal(new URL(flow.left).searchParams.get('error'), null, flow.left);
    const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
    assert.equal(tokens.claims()!.acr, 'aal1');

    const strict = await browserAuthorize(new Browser(server.base), (await authorizationStart(config, CALLBACK, { acr_values: 'aal2' })).url, user);
    assert.equal(new URL(strict.left).searchParams.get('error'), 'unmet_authentication_requirements');
  });

  test('a client introspects only its own tokens: another confidential client gets {active:false} for them', async (t) => {
    const { server, config } = await setup(t, suite);
    const other = await rp(server, 'other-app', `${SECRET}-other`);
    const user = await createUser(server.app);
    const { tokens } = await signIn(server, config, user);
    for (const token of [tokens.refresh_token!, tokens.access_token]) {
      assert.deepEqual(await client.tokenIntrospection(other, token), { active: false });
      const own = await client.tokenIntrospection(config, token);
      assert.equal(own.active, true);
      assert.equal(own.client_id, 'web-app');
      assert.equal(own.sub, user.uuid);
    }
  });

  test('registration refuses clients the provider could not use (422 naming the field); a native public client with an app-scheme redirect signs in with code + PKCE', async (t) => {
    const { server } = await setup(t, suite);
    const post = (b: unknown) => fetch(`${server.base}/api/v1/admin/oidc-clients`, { method: 'POST', headers: admin, body: JSON.stringify(b) });
    for (const [body, field] of [
      [{ client_id: 'bcl-scheme', redirect_uris: ['https://app.example.test/cb'], backchannel_logout_uri: 'com.example.app:/bcl' }, 'backchannel_logout_uri'],
      [{ client_id: 'bcl-http', redirect_uris: ['https://app.example.test/cb'], backchannel_logout_uri: 'http://app.example.test/bcl' }, 'backchannel_logout_uri'],
      [{ client_id: 'mixed', redirect_uris: ['com.example.app:/callback', 'http://app.example.test/cb'], token_endpoint_auth_method: 'none' }, 'redirect_uris[1]'],
      [{ client_id: 'web-logout-scheme', redirect_uris: ['https://app.example.test/cb'], post_logout_redirect_uris: ['com.example.app:/bye'] }, 'post_logout_redirect_uris[0]'],
    ] as Array<[unknown, string]>) {
      const res = await post(body);
      assert.equal(res.status, 422, JSON.stringify(body));
      const problem = await res.json() as { code: string; errors: Array<{ field: string }> };
      assert.equal(problem.code, 'validation_failed');
      assert.equal(problem.errors[0]!.field, field);
    }
    // https anywhere and http on loopback stay accepted for back-channel logout.
    assert.equal((await post({ client_id: 'bcl-ok', redirect_uris: ['https://app.example.test/cb'], backchannel_logout_uri: 'http://127.0.0.1:9/bcl' })).status, 201);

    const native = 'com.example.app:/callback';
    const created = await post({ client_id: 'mobile', redirect_uris: [native, 'http://127.0.0.1/callback'], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'] });
    assert.equal(created.status, 201, await created.clone().text());
    const mobile = await rp(server, 'mobile');
    const user = await createUser(server.app);
    const start = await authorizationStart(mobile, native, { scope: 'openid offline_access', prompt: 'consent' });
    const flow = await browserAuthorize(new Browser(server.base), start.url, user);
    const left = new URL(flow.left);
    assert.equal(`${left.protocol}${left.pathname}`, native);
    assert.equal(left.searchParams.get('error'), null, flow.left);
    const tokens = await client.authorizationCodeGrant(mobile, left, { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
    assert.equal(tokens.claims()!.sub, user.uuid);
    assert.ok(tokens.refresh_token);
    assert.ok((await client.refreshTokenGrant(mobile, tokens.refresh_token)).access_token);
  });

  test('a native application is asked for consent every time: a remembered consent does not hand its code to whatever app claims the scheme', async (t) => {
    const { server } = await setup(t, suite);
    const native = 'com.example.app:/callback';
    const registered = await fetch(`${server.base}/api/v1/admin/oidc-clients`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ client_id: 'mobile-consent', redirect_uris: [native], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'] }),
    });
    assert.equal(registered.status, 201, await registered.clone().text());
    const mobile = await rp(server, 'mobile-consent');
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const first = await browserAuthorize(browser, (await authorizationStart(mobile, native, { scope: 'openid' })).url, user);
    assert.ok(first.sawConsent, 'the first authorization asks');
    // Another app on the device registered the same scheme and starts its own flow with the real
    // client_id and its own PKCE verifier: the user must see the consent page again (RFC 8252 §8.6).
    const again = await browserAuthorize(browser, (await authorizationStart(mobile, native, { scope: 'openid' })).url, user);
    assert.ok(again.sawConsent, 'the second authorization asks again');
    assert.ok(!again.sawLogin, 'the provider session is still there');
  });

  test('disconnecting an application that was never listed (it skips consent) answers 404 and ends none of its tokens', async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const { browser, tokens } = await signIn(server, config, user);
    const headers = { authorization: `Bearer ${browser.cookies.get('access_token')}` };
    assert.deepEqual(await (await fetch(`${server.base}/api/v1/account/connected-apps`, { headers })).json(), [], 'a skip_consent client is not a connected application');
    const res = await fetch(`${server.base}/api/v1/account/connected-apps/web-app`, { method: 'DELETE', headers });
    assert.equal(res.status, 404);
    assert.equal((await res.json() as { code: string }).code, 'not_found');
    // The answer said nothing happened, and nothing did: the tokens still work.
    assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, true);
    assert.ok((await client.refreshTokenGrant(config, tokens.refresh_token!)).access_token);
  });

  test('the provider tables hold no live bearer value: not the code, the tokens or the session cookie', async (t) => {
    const { server, config } = await setup(t, suite);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const start = await authorizationStart(config, CALLBACK, { scope: 'openid profile offline_access', prompt: 'consent' });
    const flow = await browserAuthorize(browser, start.url, user);
    const code = new URL(flow.left).searchParams.get('code')!;
    const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
    const stored = (await server.deps.db.query<{ text: string }>('SELECT payload::text AS text FROM oidc_payloads')).rows.map((r) => r.text).join('\n');
    for (const [what, value] of [['code', code], ['access token', tokens.access_token], ['refresh token', tokens.refresh_token!], ['session cookie', browser.cookies.get('_session')!]] as const) {
      assert.ok(value && value.length >= 20, what);
      assert.ok(!stored.includes(value), `the ${what} is in oidc_payloads`);
    }
    // And they still work: the refresh token is found (through its digest) and its payload opened.
    assert.ok((await client.refreshTokenGrant(config, tokens.refresh_token!)).access_token);
  });

  test('an unknown path under /oidc/ answers 404 not_found as problem details, like any unknown route; the engine\'s own errors keep their JSON', async (t) => {
    const { server } = await setup(t, suite);
    const api = await fetch(`${server.base}/api/v1/nope`);
    const expected = await api.json() as Record<string, unknown>;
    for (const [method, path] of [['GET', '/oidc/nope'], ['GET', '/oidc/reg'], ['POST', '/oidc/device'], ['GET', '/oidc/backchannel'], ['GET', '/oidc/token']] as const) {
      const res = await fetch(`${server.base}${path}?x=1`, { method });
      assert.equal(res.status, 404, path);
      assert.equal(res.headers.get('content-type'), api.headers.get('content-type'), path);
      assert.deepEqual(await res.json(), { ...expected, detail: `No route ${method} ${path}.` }, path);
    }
    // A known endpoint's refusal is the engine's OAuth error, untouched.
    const token = await fetch(`${server.base}/oidc/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=authorization_code' });
    assert.match(token.headers.get('content-type') ?? '', /^application\/json/);
    const body = await token.json() as { error?: string; code?: string };
    assert.ok(token.status === 400 || token.status === 401, String(token.status));
    assert.ok(body.error && body.code === undefined, JSON.stringify(body));
  });
});
