/**
 * The OpenID provider against a real relying party (openid-client 6) over HTTP on a loopback port:
 * discovery, code + PKCE with a second factor, tokens verified against our JWKS, refresh rotation and
 * reuse, and the refusals (wrong redirect URI, PKCE missing or wrong, code reuse, wrong secret).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { createUser, describeWithApp, enableTotp, nextTotpStep } from '../helpers/app.ts';
import { Browser, authorizationStart, browserAuthorize, rp, startOidcServer } from '../helpers/oidc.ts';

const SECRET = 'web-app-secret-0123456789abcdef-XYZ';
const CALLBACK = 'http://app.example.test/callback';
const CLIENTS = [
  { client_id: 'web-app', client_secret: SECRET, redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'], client_name: 'Web App' },
  { client_id: 'spa', token_endpoint_auth_method: 'none', redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'] },
  { client_id: 'first-party', client_secret: SECRET, redirect_uris: [CALLBACK], token_endpoint_auth_method: 'client_secret_post', skip_consent: true },
];

async function callbackCode(config: client.Configuration, left: string, start: { verifier: string; state: string; nonce: string }) {
  return client.authorizationCodeGrant(config, new URL(left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
}

/** The OAuth error code of a refusal (a body error, or a WWW-Authenticate challenge of a 401). */
function oauthError(e: unknown): string | undefined {
  if (e instanceof client.ResponseBodyError) return e.error;
  if (e instanceof client.WWWAuthenticateChallengeError) return e.cause[0]?.parameters.error;
  return undefined;
}

describeWithApp('OpenID provider with openid-client', (suite) => {
  test('discovery is the provider\'s own document: issuer PUBLIC_URL, our JWKS, code + S256, the contract\'s scopes and claims', async (t) => {
    const server = await startOidcServer(t, suite, CLIENTS);
    const config = await rp(server, 'web-app', SECRET);
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, server.base);
    assert.equal(meta.jwks_uri, `${server.base}/.well-known/jwks.json`);
    for (const ep of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'revocation_endpoint', 'introspection_endpoint', 'end_session_endpoint'] as const) {
      assert.ok(String(meta[ep]).startsWith(`${server.base}/`), ep);
    }
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(meta.response_types_supported, ['code']);
    assert.deepEqual(meta.id_token_signing_alg_values_supported, ['RS256']);
    for (const g of ['authorization_code', 'refresh_token', 'client_credentials']) assert.ok(meta.grant_types_supported?.includes(g), g);
    for (const s of ['openid', 'profile', 'email', 'offline_access']) assert.ok(meta.scopes_supported?.includes(s), s);
    for (const c of ['sub', 'preferred_username', 'email', 'email_verified', 'amr', 'acr', 'auth_time', 'sid']) assert.ok(meta.claims_supported?.includes(c), c);
    assert.deepEqual(meta.acr_values_supported, ['aal1', 'aal2']);
    assert.equal(meta.backchannel_logout_supported, true);
    assert.deepEqual(meta.token_endpoint_auth_methods_supported?.filter((m) => ['none', 'client_secret_basic', 'client_secret_post'].includes(m)).sort(), ['client_secret_basic', 'client_secret_post', 'none']);
  });

  test('code + PKCE with TOTP through the hosted login and consent: ID token carries the contract claims and verifies with our JWKS; refresh rotates, reuse revokes', async (t) => {
    const server = await startOidcServer(t, suite, CLIENTS);
    const user = await createUser(server.app);
    const { secret } = await enableTotp(server, user);
    nextTotpStep(server.clock);
    const config = await rp(server, 'web-app', SECRET);
    const start = await authorizationStart(config, CALLBACK, { scope: 'openid profile email offline_access', prompt: 'consent' });
    const browser = new Browser(server.base);
    const flow = await browserAuthorize(browser, start.url, user, () => ({ security_code: totpCodeAt(secret, server.clock()) }));
    assert.ok(flow.sawLogin && flow.sawConsent);
    assert.ok(flow.left.startsWith(`${CALLBACK}?`));
    const tokens = await callbackCode(config, flow.left, start);
    const claims = tokens.claims()!;
    assert.equal(claims.sub, user.uuid);
    assert.equal(claims.acr, 'aal2');
    assert.ok(Array.isArray(claims.amr) && claims.amr.includes('otp'), `amr ${JSON.stringify(claims.amr)}`);
    assert.equal(typeof claims.auth_time, 'number');
    assert.equal(typeof claims.sid, 'string');
    // The ID token verifies offline against the same JWKS the JSON API's tokens use.
    const jwks = createRemoteJWKSet(new URL(`${server.base}/.well-known/jwks.json`));
    const { protectedHeader } = await jwtVerify(tokens.id_token!, jwks, { issuer: server.base, audience: 'web-app', algorithms: ['RS256'] });
    assert.equal(protectedHeader.kid, await server.deps.keys.currentKid());
    const info = await client.fetchUserInfo(config, tokens.access_token, user.uuid);
    assert.equal(info.preferred_username, user.username);
    assert.equal(info.email, user.email);
    assert.equal(info.email_verified, false);
    assert.ok(tokens.refresh_token, 'offline_access with prompt=consent gives a refresh token');

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'rotated');
    assert.equal(refreshed.claims()?.sub, user.uuid);
    // Reusing the rotated-away token is refused and revokes the grant: the new one dies with it.
    await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
    await assert.rejects(client.refreshTokenGrant(config, refreshed.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
    const intro = await client.tokenIntrospection(config, refreshed.access_token);
    assert.equal(intro.active, false);
  });

  test('consent is remembered per client: the second authorization asks nothing; a first-party client never asks', async (t) => {
    const server = await startOidcServer(t, suite, CLIENTS);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const config = await rp(server, 'web-app', SECRET);
    const first = await browserAuthorize(browser, (await authorizationStart(config, CALLBACK)).url, user);
    assert.ok(first.sawLogin && first.sawConsent);
    const other = new Browser(server.base);
    const second = await browserAuthorize(other, (await authorizationStart(config, CALLBACK)).url, user);
    assert.ok(second.sawLogin && !second.sawConsent, 'remembered across browsers');
    const fp = await rp(server, 'first-party', SECRET, client.ClientSecretPost(SECRET));
    const start = await authorizationStart(fp, CALLBACK);
    const third = await browserAuthorize(browser, start.url, user);
    assert.ok(!third.sawLogin && !third.sawConsent, 'single sign-on, no consent for a first-party client');
    const tokens = await callbackCode(fp, third.left, start);
    assert.equal(tokens.claims()?.acr, 'aal1');
  });

  test('Connected applications: listed with their scopes; disconnecting (24 times at once: once) ends the tokens and brings the consent screen back', async (t) => {
    const server = await startOidcServer(t, suite, CLIENTS);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const config = await rp(server, 'web-app', SECRET);
    const start = await authorizationStart(config, CALLBACK);
    const flow = await browserAuthorize(browser, start.url, user);
    const tokens = await callbackCode(config, flow.left, start);
    const headers = { authorization: `Bearer ${browser.cookies.get('access_token')}` };
    const apps = await (await fetch(`${server.base}/api/v1/account/connected-apps`, { headers })).json() as Array<{ client_id: string; scopes: string[] }>;
    assert.deepEqual(apps.map((a) => [a.client_id, [...a.scopes].sort()]), [['web-app', ['email', 'openid', 'profile']]]);
    const other = await createUser(server.app);
    const otherBrowser = new Browser(server.base);
    await otherBrowser.login(other);
    const foreign = await fetch(`${server.base}/api/v1/account/connected-apps/web-app`, { method: 'DELETE', headers: { authorization: `Bearer ${otherBrowser.cookies.get('access_token')}` } });
    assert.equal(foreign.status, 404, 'another user cannot disconnect it');
    assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, true);
    // Two dozen disconnects at once (a double click, a retrying client): one does it, the rest find nothing.
    const dels = await Promise.all(Array.from({ length: 24 }, () => fetch(`${server.base}/api/v1/account/connected-apps/web-app`, { method: 'DELETE', headers })));
    assert.deepEqual(dels.map((d) => d.status).sort(), [204, ...Array<number>(23).fill(404)]);
    assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, false);
    assert.deepEqual(await (await fetch(`${server.base}/api/v1/account/connected-apps`, { headers })).json(), []);
    const again = await browserAuthorize(browser, (await authorizationStart(config, CALLBACK)).url, user);
    assert.ok(again.sawConsent, 'consent asked again');
    const audit = (await server.deps.db.query<{ type: string }>("SELECT type FROM audit_log WHERE user_id = $1 AND type LIKE 'oidc.%' ORDER BY id", [user.uuid])).rows.map((r) => r.type);
    assert.deepEqual(audit, ['oidc.consent_granted', 'oidc.app_disconnected', 'oidc.consent_granted']);
  });

  test('the consent form refuses a cross-site post (CSRF), with Fetch Metadata or with a foreign Origin', async (t) => {
    const server = await startOidcServer(t, suite, CLIENTS);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const config = await rp(server, 'web-app', SECRET);
    let step = await browser.follow((await authorizationStart(config, CALLBACK)).url);
    await browser.login(user);
    step = await browser.follow(new URL(step.url).searchParams.get('return_to')!);
    assert.equal(step.res.status, 200, 'consent page');
    const confirm = `${new URL(step.url).pathname}/confirm`;
    for (const headers of [{ 'sec-fetch-site': 'cross-site', origin: 'null' }, { origin: 'http://evil.example.test' }, { 'sec-fetch-site': 'same-site', origin: 'null' }] as Array<Record<string, string>>) {
      const res = await browser.request(confirm, { method: 'POST', headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
      assert.equal(res.status, 403, JSON.stringify(headers));
      assert.equal(((await res.json()) as { code: string }).code, 'csrf_rejected');
    }
    assert.equal((await server.deps.db.query('SELECT 1 FROM oidc_consents WHERE user_id = $1', [user.uuid])).rows.length, 0, 'nothing was consented');
    const ok = await browser.follow(confirm, { method: 'POST', headers: { 'sec-fetch-site': 'same-origin', origin: 'null', 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
    assert.ok(ok.left?.startsWith(CALLBACK), 'a same-origin form post (Origin null under no-referrer) goes through');
  });

  test('after a key rotation the provider signs with the new current key; old and new ID tokens verify with the JWKS', async (t) => {
    const adminKey = 'admin-key-0123456789abcdef-0123456789';
    const server = await startOidcServer(t, suite, CLIENTS, { ADMIN_API_KEY: adminKey, JWT_KEY_ACTIVATION_DELAY: '0' });
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const config = await rp(server, 'web-app', SECRET);
    const idToken = async () => {
      const start = await authorizationStart(config, CALLBACK);
      const flow = await browserAuthorize(browser, start.url, user);
      return (await callbackCode(config, flow.left, start)).id_token!;
    };
    const before = await idToken();
    const rotated = await fetch(`${server.base}/api/v1/admin/keys/rotate`, { method: 'POST', headers: { authorization: `Bearer ${adminKey}` } });
    assert.equal(rotated.status, 201, await rotated.clone().text());
    const after = await idToken();
    const kidOf = (jwt: string) => (JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;
    assert.notEqual(kidOf(after), kidOf(before), 'signed with the new key');
    assert.equal(kidOf(after), await server.deps.keys.currentKid());
    const jwks = createRemoteJWKSet(new URL(`${server.base}/.well-known/jwks.json`));
    for (const token of [before, after]) await jwtVerify(token, jwks, { issuer: server.base, audience: 'web-app', algorithms: ['RS256'] });
  });

  test('Deny on the consent page sends access_denied to the application and remembers nothing; a finished interaction cannot be replayed', async (t) => {
    const server = await startOidcServer(t, suite, CLIENTS);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    const config = await rp(server, 'web-app', SECRET);
    let step = await browser.follow((await authorizationStart(config, CALLBACK)).url);
    await browser.login(user);
    step = await browser.follow(new URL(step.url).searchParams.get('return_to')!);
    const interaction = new URL(step.url).pathname;
    const denied = await browser.follow(`${interaction}/abort`, { method: 'POST' });
    assert.equal(new URL(denied.left!).searchParams.get('error'), 'access_denied');
    assert.equal((await server.deps.db.query('SELECT 1 FROM oidc_consents WHERE user_id = $1', [user.uuid])).rows.length, 0);
    const replay = await browser.request(`${interaction}/confirm`, { method: 'POST' });
    assert.equal(replay.status, 400);
    assert.equal(replay.headers.get('location'), null);
  });

  test('a redirect_uri that is not registered is never redirected to', async (t) => {
    const server = await startOidcServer(t, suite, CLIENTS);
    const config = await rp(server, 'web-app', SECRET);
    const start = await authorizationStart(config, 'http://evil.example.test/steal');
    const res = await new Browser(server.base).request(start.url);
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('location'), null);
    const body = await res.text();
    assert.match(body, /redirect_uri/);
    assert.doesNotMatch(body, /evil\.example\.test/);
  });

  test('a public client must send PKCE S256; a wrong verifier is refused at the token endpoint', async (t) => {
    const server = await startOidcServer(t, suite, CLIENTS);
    const user = await createUser(server.app);
    const config = await rp(server, 'spa');
    const noPkce = client.buildAuthorizationUrl(config, { redirect_uri: CALLBACK, scope: 'openid', state: 's1' });
    const res = await new Browser(server.base).request(noPkce.href);
    const location = new URL(res.headers.get('location')!);
    assert.equal(location.origin + location.pathname, CALLBACK);
    assert.equal(location.searchParams.get('error'), 'invalid_request');
    assert.match(location.searchParams.get('error_description')!, /PKCE/);
    const plain = client.buildAuthorizationUrl(config, { redirect_uri: CALLBACK, scope: 'openid', state: 's2', code_challenge: 'x'.repeat(43), code_challenge_method: 'plain' });
    const resPlain = await new Browser(server.base).request(plain.href);
    assert.equal(new URL(resPlain.headers.get('location')!).searchParams.get('error'), 'invalid_request');

    const start = await authorizationStart(config, CALLBACK);
    const flow = await browserAuthorize(new Browser(server.base), start.url, user);
    await assert.rejects(
      client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: client.randomPKCECodeVerifier(), expectedState: start.state, expectedNonce: start.nonce }),
      (e: client.ResponseBodyError) => e.error === 'invalid_grant',
    );
  });

  test('an authorization code works once; its reuse revokes the tokens it gave', async (t) => {
    const server = await startOidcServer(t, suite, CLIENTS);
    const user = await createUser(server.app);
    const config = await rp(server, 'web-app', SECRET);
    const start = await authorizationStart(config, CALLBACK);
    const flow = await browserAuthorize(new Browser(server.base), start.url, user);
    const tokens = await callbackCode(config, flow.left, start);
    assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, true);
    await assert.rejects(callbackCode(config, flow.left, start), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
    assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, false);
  });

  test('concurrent exchanges of one code: exactly one gets tokens', async (t) => {
    const server = await startOidcServer(t, suite, CLIENTS);
    const user = await createUser(server.app);
    const config = await rp(server, 'web-app', SECRET);
    const start = await authorizationStart(config, CALLBACK);
    const flow = await browserAuthorize(new Browser(server.base), start.url, user);
    const code = new URL(flow.left).searchParams.get('code')!;
    const results = await Promise.all(Array.from({ length: 12 }, () => fetch(config.serverMetadata().token_endpoint!, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`web-app:${SECRET}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: CALLBACK, code_verifier: start.verifier }),
    })));
    const ok = results.filter((r) => r.status === 200);
    assert.equal(ok.length, 1, `statuses ${results.map((r) => r.status).join(',')}`);
    for (const r of results.filter((x) => x.status !== 200)) assert.equal(((await r.json()) as { error: string }).error, 'invalid_grant');
  });

  test('a wrong client secret is refused (basic and post)', async (t) => {
    const server = await startOidcServer(t, suite, CLIENTS);
    const user = await createUser(server.app);
    const good = await rp(server, 'web-app', SECRET);
    const start = await authorizationStart(good, CALLBACK);
    const flow = await browserAuthorize(new Browser(server.base), start.url, user);
    const bad = await rp(server, 'web-app', `${SECRET}x`);
    await assert.rejects(callbackCode(bad, flow.left, start), (e) => oauthError(e) === 'invalid_client');
    const badPost = await rp(server, 'first-party', 'nope', client.ClientSecretPost('nope'));
    await assert.rejects(client.refreshTokenGrant(badPost, 'whatever'), (e) => oauthError(e) === 'invalid_client');
  });
});
