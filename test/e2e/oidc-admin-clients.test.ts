/**
 * OpenID clients through the admin API: the secret is generated and shown once, sealed at rest, the
 * client works with openid-client at once, deleting it ends its tokens; validation names the field;
 * only admins may call it; every change is audited.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { createUser, describeWithApp } from '../helpers/app.ts';
import { Browser, authorizationStart, browserAuthorize, rp, startOidcServer } from '../helpers/oidc.ts';

const ADMIN_KEY = 'admin-key-0123456789abcdef-0123456789';
const CALLBACK = 'http://app.example.test/callback';
const admin = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };

describeWithApp('OpenID clients through the admin API', (suite) => {
  test('create (secret once, sealed at rest), sign in with it, list without secrets, delete ends its tokens; audited', async (t) => {
    const server = await startOidcServer(t, suite, [{ client_id: 'from-file', client_secret: 'f'.repeat(32), redirect_uris: [CALLBACK] }], { ADMIN_API_KEY: ADMIN_KEY });
    const created = await fetch(`${server.base}/api/v1/admin/oidc-clients`, { method: 'POST', headers: admin, body: JSON.stringify({ client_id: 'wiki', redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'], client_name: 'Team wiki' }) });
    assert.equal(created.status, 201);
    const body = await created.json() as { client_id: string; client_secret: string; source: string };
    assert.equal(body.source, 'api');
    assert.ok(body.client_secret.length >= 43);
    const stored = (await server.deps.db.query<{ metadata: unknown; secret_sealed: string }>("SELECT metadata, secret_sealed FROM oidc_clients WHERE client_id = 'wiki'")).rows[0]!;
    assert.ok(!JSON.stringify(stored).includes(body.client_secret), 'the secret is not stored in clear');

    const config = await rp(server, 'wiki', body.client_secret);
    const user = await createUser(server.app);
    const start = await authorizationStart(config, CALLBACK);
    const flow = await browserAuthorize(new Browser(server.base), start.url, user);
    const tokens = await client.authorizationCodeGrant(config, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
    assert.equal(tokens.claims()!.sub, user.uuid);

    const list = await (await fetch(`${server.base}/api/v1/admin/oidc-clients`, { headers: admin })).json() as Array<Record<string, unknown>>;
    assert.deepEqual(list.map((c) => [c.client_id, c.source]), [['from-file', 'file'], ['wiki', 'api']]);
    assert.ok(list.every((c) => !('client_secret' in c)) && !JSON.stringify(list).includes(body.client_secret), 'no secret in the list');

    const del = await fetch(`${server.base}/api/v1/admin/oidc-clients/wiki`, { method: 'DELETE', headers: { authorization: admin.authorization } });
    assert.equal(del.status, 204);
    const res = await fetch(config.serverMetadata().userinfo_endpoint!, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    assert.equal(res.status, 401, 'tokens of a deleted client are dead');
    await assert.rejects(client.refreshTokenGrant(config, 'x'), (e) => e instanceof client.ClientError || e instanceof client.ResponseBodyError || e instanceof client.WWWAuthenticateChallengeError);
    assert.equal((await fetch(`${server.base}/api/v1/admin/oidc-clients/wiki`, { method: 'DELETE', headers: { authorization: admin.authorization } })).status, 404);
    assert.equal((await fetch(`${server.base}/api/v1/admin/oidc-clients/from-file`, { method: 'DELETE', headers: { authorization: admin.authorization } })).status, 422);

    const audit = (await server.deps.db.query<{ data: { action: string; client_id: string } }>("SELECT data FROM audit_log WHERE type = 'admin.action' ORDER BY id")).rows.map((r) => `${r.data.action}:${r.data.client_id}`);
    assert.deepEqual(audit.filter((a) => a.startsWith('oidc_client.')), ['oidc_client.created:wiki', 'oidc_client.deleted:wiki']);
  });

  test('bad metadata is 422 naming the field; taken ids are refused; a client_credentials-only client gets no redirect URI', async (t) => {
    const server = await startOidcServer(t, suite, [{ client_id: 'from-file', client_secret: 'f'.repeat(32), redirect_uris: [CALLBACK] }], { ADMIN_API_KEY: ADMIN_KEY });
    const post = (b: unknown) => fetch(`${server.base}/api/v1/admin/oidc-clients`, { method: 'POST', headers: admin, body: JSON.stringify(b) });
    for (const [b, field] of [
      [{ client_id: 'a', redirect_uris: ['not a url'] }, 'redirect_uris[0]'],
      [{ client_id: 'a', grant_types: ['client_credentials'], redirect_uris: [CALLBACK] }, 'redirect_uris'],
      [{ client_id: 'a', redirect_uris: [CALLBACK], scope: 'openid admin' }, 'scope'],
      [{ client_id: 'from-file', redirect_uris: [CALLBACK] }, 'client_id'],
      [{ client_id: 'a', redirect_uris: [CALLBACK], client_secret: 'chosen-by-me-0123456789abcdef0123' }, 'client_secret'],
    ] as Array<[unknown, string]>) {
      const res = await post(b);
      assert.equal(res.status, 422, JSON.stringify(b));
      const problem = await res.json() as { code: string; errors: Array<{ field: string }> };
      assert.equal(problem.code, 'validation_failed');
      assert.equal(problem.errors[0]!.field, field);
    }
    const svc = await post({ client_id: 'svc', grant_types: ['client_credentials'], scope: 'openid' });
    assert.equal(svc.status, 201);
    const s = await svc.json() as { redirect_uris: string[]; client_secret: string };
    assert.deepEqual(s.redirect_uris, []);
    assert.equal((await post({ client_id: 'svc', grant_types: ['client_credentials'] })).status, 422);
    const token = await client.clientCredentialsGrant(await rp(server, 'svc', s.client_secret));
    assert.ok(token.access_token);
  });

  test('only admins: no credentials 401, a plain user 403', async (t) => {
    const server = await startOidcServer(t, suite, [], { ADMIN_API_KEY: ADMIN_KEY });
    assert.equal((await fetch(`${server.base}/api/v1/admin/oidc-clients`)).status, 401);
    const user = await createUser(server.app);
    const browser = new Browser(server.base);
    await browser.login(user);
    const res = await fetch(`${server.base}/api/v1/admin/oidc-clients`, { method: 'POST', headers: { authorization: `Bearer ${browser.cookies.get('access_token')}`, 'content-type': 'application/json' }, body: JSON.stringify({ client_id: 'x', redirect_uris: [CALLBACK] }) });
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { code: string }).code, 'admin_required');
  });
});

describeWithApp('an OpenID client id used again after its client was removed from OIDC_CLIENTS_FILE', (suite) => {
  test('the client registered under the old id inherits no consent, grant or refresh token of the removed one', async (t) => {
    const fileClient = { client_id: 'wiki', client_secret: 'w'.repeat(32), redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'] };
    const before = await startOidcServer(t, suite, [fileClient]);
    const user = await createUser(before.app);
    const oldConfig = await rp(before, 'wiki', fileClient.client_secret);
    const browser = new Browser(before.base);
    const start = await authorizationStart(oldConfig, CALLBACK, { scope: 'openid offline_access', prompt: 'consent' });
    const flow = await browserAuthorize(browser, start.url, user);
    const old = await client.authorizationCodeGrant(oldConfig, new URL(flow.left), { pkceCodeVerifier: start.verifier, expectedState: start.state, expectedNonce: start.nonce });
    assert.ok(old.refresh_token);
    await before.app.close();

    // The operator took `wiki` out of the file and restarted; later an admin registers another application as `wiki`.
    // One TOKEN_HASH_KEY across the restart, as in production: the old refresh token still names its rows.
    const after = await startOidcServer(t, suite, [], { ADMIN_API_KEY: ADMIN_KEY }, { sameTokenHashKeyAs: before });
    const created = await fetch(`${after.base}/api/v1/admin/oidc-clients`, { method: 'POST', headers: admin, body: JSON.stringify({ client_id: 'wiki', redirect_uris: [CALLBACK], grant_types: ['authorization_code', 'refresh_token'] }) });
    assert.equal(created.status, 201);
    const newConfig = await rp(after, 'wiki', ((await created.json()) as { client_secret: string }).client_secret);
    await assert.rejects(client.refreshTokenGrant(newConfig, old.refresh_token!), (e: client.ResponseBodyError) => e.error === 'invalid_grant', "the removed client's refresh token");
    const left = await after.deps.db.query("SELECT kind FROM oidc_payloads WHERE client_id = 'wiki' UNION ALL SELECT 'consent' FROM oidc_consents WHERE client_id = 'wiki'");
    assert.deepEqual(left.rows, [], 'nothing of the removed client is left');
    const again = await authorizationStart(newConfig, CALLBACK, { scope: 'openid offline_access' });
    const second = await browserAuthorize(new Browser(after.base), again.url, user);
    assert.equal(second.sawConsent, true, 'the new application asks for consent');
    const audit = (await after.deps.db.query<{ data: { action: string; client_id: string } }>("SELECT data FROM audit_log WHERE type = 'admin.action' ORDER BY id")).rows.map((r) => `${r.data.action}:${r.data.client_id}`);
    assert.deepEqual(audit.filter((a) => a.startsWith('oidc_client.')), ['oidc_client.created:wiki']);
  });
});
