/**
 * Deleting a user (admin API) ends what the user was signed in to, as a deactivation does: the
 * provider sessions get their back-channel logouts and lose their grants and tokens, and each live
 * Twofold session is recorded as revoked (session.revoked, announced to other services). The links
 * between the two used to go with the user row (ON DELETE CASCADE), before any sweep saw them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { createUser, describeWithApp } from '../helpers/app.ts';
import { Browser, authorizationStart, browserAuthorize, logoutReceiver, rp, startOidcServer } from '../helpers/oidc.ts';

const SECRET = 'web-app-secret-0123456789abcdef-XYZ';
const CALLBACK = 'http://app.example.test/callback';
const ADMIN_KEY = 'admin-key-0123456789abcdef-0123456789';

describeWithApp('deleting a user ends their provider sessions', (suite) => {
  test('back-channel logout, no provider rows left, session.revoked recorded for each live session', async (t) => {
    const receiver = await logoutReceiver(t);
    const server = await startOidcServer(t, suite, [
      { client_id: 'web-app', client_secret: SECRET, redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'], backchannel_logout_uri: receiver.uri, skip_consent: true },
    ], { ADMIN_API_KEY: ADMIN_KEY });
    const config = await rp(server, 'web-app', SECRET);
    const user = await createUser(server.app);
    const bystander = await createUser(server.app);
    const signIn = async (who: typeof user) => {
      const browser = new Browser(server.base);
      const start = await authorizationStart(config, CALLBACK, { scope: 'openid profile offline_access', prompt: 'consent' });
      const flow = await browserAuthorize(browser, start.url, who);
      const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
      return { tokens, sid: decodeJwt(browser.cookies.get('access_token')!).sid as string };
    };
    const mine = await signIn(user);
    const theirs = await signIn(bystander);

    const res = await fetch(`${server.base}/api/v1/admin/users/${user.uuid}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    assert.equal(res.status, 204);
    await assert.rejects(client.refreshTokenGrant(config, mine.tokens.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant');
    // The admin route started a sweep; this waits for it (and sweeps once more), so the notice has arrived.
    await server.app.oidc.sweeper.run();
    assert.equal(receiver.tokens.length, 1, 'one back-channel logout for the deleted user');
    const logout = decodeJwt(receiver.tokens[0]!);
    assert.equal(logout.sub, user.uuid);
    assert.equal(logout.sid, mine.tokens.claims()!.sid);

    const db = server.deps.db;
    const left = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM oidc_payloads WHERE account_id = $1', [user.uuid]);
    assert.equal(left.rows[0]!.n, 0, "the deleted user's grants, sessions and tokens are gone");
    assert.equal((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM oidc_session_links WHERE user_id = $1', [user.uuid])).rows[0]!.n, 0);

    const audit = await (await fetch(`${server.base}/api/v1/admin/audit?user=${user.uuid}&type=session.revoked`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).json() as { events: Array<{ data: { sid: string; reason: string } }> };
    assert.deepEqual(audit.events.map((e) => e.data), [{ sid: mine.sid, reason: 'user_deleted' }]);

    // Nobody else's session ended with it.
    const refreshed = await client.refreshTokenGrant(config, theirs.tokens.refresh_token!);
    assert.ok(refreshed.access_token);
    assert.equal(receiver.tokens.length, 1);
  });

  test('a consent form submitted a dozen times at once: one authorization code, and no grant of the deleted user is left behind', async (t) => {
    const server = await startOidcServer(t, suite, [
      { client_id: 'web-app', client_secret: SECRET, redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'] },
    ], { ADMIN_API_KEY: ADMIN_KEY });
    const config = await rp(server, 'web-app', SECRET);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    await browser.login(user);
    const start = await authorizationStart(config, CALLBACK, { scope: 'openid profile' });
    const consent = await browser.follow(start.url);
    assert.match(new URL(consent.url).pathname, /^\/oidc\/interaction\/[^/]+$/, 'the consent page');
    const posts = await Promise.all(Array.from({ length: 12 }, () => browser.request(`${new URL(consent.url).pathname}/confirm`, { method: 'POST' })));
    assert.ok(posts.every((r) => r.status === 303), posts.map((r) => r.status).join());
    const resumed = await Promise.all(posts.map((r) => browser.follow(r.headers.get('location')!)));
    assert.equal(resumed.filter((r) => r.left && new URL(r.left).searchParams.has('code')).length, 1, 'one authorization code');

    const res = await fetch(`${server.base}/api/v1/admin/users/${user.uuid}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    assert.equal(res.status, 204);
    await server.app.oidc.sweeper.run();
    const left = await server.deps.db.query<{ kind: string }>('SELECT kind FROM oidc_payloads WHERE account_id = $1', [user.uuid]);
    assert.deepEqual(left.rows, [], "nothing of the deleted user's is left");
  });
});
