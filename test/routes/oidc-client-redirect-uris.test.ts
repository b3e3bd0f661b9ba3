/**
 * Redirect URIs are compared character for character (RFC 6749 §3.1.2), so a registered one must be
 * exactly an absolute URI: no user information, no whitespace or control characters (a trailing
 * newline the URL parser would drop), no backslash (browsers read it as "/"), no wildcard host, no
 * fragment. Refused with 422 validation_failed naming the field, for redirect, post-logout and
 * back-channel URIs, through the admin API and in OIDC_CLIENTS_FILE. Clients stored before keep working.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeWithApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { insertClient } from '../../src/db/repositories/oidc/clients.ts';
import { parseClientsFile } from '../../src/oidc/clients-file.ts';

const CLIENTS = '/api/v1/admin/oidc-clients';

const BAD: Array<[string, string]> = [
  ['https://user:pass@app.example.com/cb', 'user information'],
  ['https://app.example.com@evil.example/cb', 'user information'],
  ['https://@app.example.com/cb', 'user information'],
  ['https://app.example.com/cb\n', 'control characters'],
  ['https://app.example.com/c\tb', 'control characters'],
  [' https://app.example.com/cb', 'spaces'],
  ['https://app.example.com/c b', 'spaces'],
  ['https://app.example.com/cb\u0007', 'control characters'],
  ['https://app.example.com/cb\u007f', 'control characters'],
  ['https://app.example.com/cb\u0085', 'control characters'],
  ['https://app.example.com/cb\u2028', 'spaces'],
  ['https://evil.example\\@app.example.com/cb', 'backslash'],
  ['https://app.example.com\\cb', 'backslash'],
  ['https://*.example.com/cb', 'one host'],
  ['https://app.*/cb', 'one host'],
  ['https://ex%61mple.com/cb', 'one host'],
  ['https:app.example.com/cb', 'https://'],
  ['https:///app.example.com/cb', 'one host'],
  ['https://app.example.com/cb#frag', 'fragment'],
  ['https://app.example.com/cb#', 'fragment'],
  ['https://app.example.com/caf\u00e9', 'characters of a URI'],
  ['https://app.example.com/cb?x=<script>', 'characters of a URI'],
  ['https://app.example.com/cb%zz', 'characters of a URI'],
  ['com.example.app://user@cb', 'user information'],
];

describeWithApp('OpenID client URIs are exact absolute URIs', (suite) => {
  test('redirect, post-logout and back-channel URIs with user information, control characters, backslashes, wildcards or fragments: 422, nothing stored', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    let n = 0;
    for (const [uri, why] of BAD) {
      const bodies: Array<[Record<string, unknown>, string]> = [
        [{ redirect_uris: ['https://app.example.com/ok', uri] }, 'redirect_uris[1]'],
        [{ redirect_uris: ['https://app.example.com/ok'], post_logout_redirect_uris: [uri] }, 'post_logout_redirect_uris[0]'],
      ];
      if (uri.startsWith('https')) bodies.push([{ redirect_uris: ['https://app.example.com/ok'], backchannel_logout_uri: uri }, 'backchannel_logout_uri']);
      for (const [body, field] of bodies) {
        const clientId = `bad-${n++}`;
        const res = await adminCall(ta, 'POST', CLIENTS, { client_id: clientId, ...body });
        assert.equal(res.statusCode, 422, `${JSON.stringify(uri)} as ${field}: ${res.body}`);
        assert.equal(res.json().code, 'validation_failed');
        assert.equal(res.json().errors[0].field, field, JSON.stringify(uri));
        assert.ok(res.json().errors[0].message.includes(why), `${JSON.stringify(uri)}: ${res.json().errors[0].message}`);
        assert.equal((await ta.deps.db.query('SELECT 1 FROM oidc_clients WHERE client_id = $1', [clientId])).rows.length, 0);
      }
    }
  });

  test('ordinary URIs are still taken as written: paths, queries, ports, percent-encoding, loopback, app schemes', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const good: Array<[string, Record<string, unknown>]> = [
      ['web', { redirect_uris: ['https://app.example.com/cb?tenant=a&x=1', 'https://app.example.com:8443/a%20b/cb', 'http://127.0.0.1:53682/cb', 'http://[::1]:8080/cb', 'HTTPS://App.Example.com/cb'], post_logout_redirect_uris: ['https://app.example.com', 'https://app.example.com/bye'], backchannel_logout_uri: 'https://app.example.com/backchannel' }],
      ['native', { redirect_uris: ['com.example.app:/oauth2redirect', 'com.example.app://callback', 'com.example.app:///cb', 'http://localhost:3000/cb'], token_endpoint_auth_method: 'none' }],
    ];
    for (const [clientId, body] of good) {
      const res = await adminCall(ta, 'POST', CLIENTS, { client_id: clientId, ...body });
      assert.equal(res.statusCode, 201, `${clientId}: ${res.body}`);
      assert.deepEqual(res.json().redirect_uris, body.redirect_uris, 'stored as written');
    }
  });

  test('a client stored before the check, with a URI it now refuses, is still listed and served', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const legacy = 'https://user@legacy.example.com/cb';
    await insertClient(ta.deps.db, {
      client_id: 'legacy',
      metadata: { client_id: 'legacy', redirect_uris: [legacy], grant_types: ['authorization_code'], token_endpoint_auth_method: 'none', scope: 'openid', skip_consent: false },
      secret_sealed: null,
      created_at: ta.clock(),
    });
    const list = await adminCall(ta, 'GET', CLIENTS);
    assert.equal(list.statusCode, 200, list.body);
    assert.deepEqual(list.json().find((c: { client_id: string }) => c.client_id === 'legacy')?.redirect_uris, [legacy]);
    const challenge = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';
    const auth = await ta.app.inject({ method: 'GET', url: `/oidc/auth?client_id=legacy&response_type=code&scope=openid&state=s&redirect_uri=${encodeURIComponent(legacy)}&code_challenge=${challenge}&code_challenge_method=S256` });
    assert.equal(auth.statusCode, 303, auth.body);
    assert.match(auth.headers.location as string, /\/oidc\/interaction\//);
    assert.equal((await adminCall(ta, 'DELETE', `${CLIENTS}/legacy`)).statusCode, 204, 'and can be deleted');
  });

  test('OIDC_CLIENTS_FILE refuses the same URIs, naming the entry and field', () => {
    // NUL too (the API refuses a body holding one before it gets here: 400 malformed_request).
    for (const [uri] of [...BAD, ['https://app.example.com/cb\u0000']]) {
      const file = JSON.stringify([{ client_id: 'f', client_secret: 's'.repeat(32), redirect_uris: [uri] }]);
      assert.throws(() => parseClientsFile(file), /OIDC_CLIENTS_FILE: \[0\]\.redirect_uris\[0\] /, JSON.stringify(uri));
    }
  });
});
