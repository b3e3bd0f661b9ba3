/**
 * A request line in absolute form (`GET http://evil.example/… HTTP/1.1`, which an HTTP/1.1 server
 * must accept) names an authority of the sender's choosing. The OpenID engine built its endpoint URLs
 * from it: the discovery document advertised the sender's host for the token endpoint and the JWKS,
 * for any shared cache in front of the service to keep and hand to relying parties. Every URL the
 * engine writes must come from PUBLIC_URL, whatever the request line says.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AddressInfo } from 'node:net';
import { originForm } from '../../src/oidc/mount.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { describeWithApp } from '../helpers/app.ts';
import { rawExchange } from '../helpers/net.ts';

/** The body of a (possibly chunked) HTTP/1.1 answer. */
function bodyOf(answer: string): string {
  const [head, ...rest] = answer.split('\r\n\r\n');
  const body = rest.join('\r\n\r\n');
  if (!/transfer-encoding: chunked/i.test(head!)) return body;
  let out = '';
  for (let at = 0; ; ) {
    const end = body.indexOf('\r\n', at);
    const size = Number.parseInt(body.slice(at, end), 16);
    if (!size) return out;
    out += body.slice(end + 2, end + 2 + size);
    at = end + 2 + size + 2;
  }
}

test('originForm keeps the path and query of any request target', () => {
  assert.equal(originForm('/oidc/auth?x=1'), '/oidc/auth?x=1');
  assert.equal(originForm('http://evil.example/oidc/auth?x=1'), '/oidc/auth?x=1');
  assert.equal(originForm('https://evil.example:8443/.well-known/openid-configuration'), '/.well-known/openid-configuration');
  assert.equal(originForm(undefined), '/');
});

describeWithApp('OpenID requests with an absolute-form request line', (suite) => {
  test('discovery and the authorization redirect name PUBLIC_URL, never the request line\'s host', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const created = await adminCall(ta, 'POST', '/api/v1/admin/oidc-clients', { client_id: 'wiki', redirect_uris: ['https://rp.example.com/cb'] });
    assert.equal(created.statusCode, 201, created.body);
    await ta.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = ta.app.server.address() as AddressInfo;
    const head = `Host: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`;

    const answer = await rawExchange(port, `GET http://evil.example/.well-known/openid-configuration HTTP/1.1\r\n${head}`);
    assert.match(answer, /^HTTP\/1\.1 200/, answer);
    const doc = JSON.parse(bodyOf(answer)) as Record<string, unknown>;
    const publicUrl = ta.deps.config.publicUrl;
    for (const key of ['issuer', 'authorization_endpoint', 'token_endpoint', 'jwks_uri', 'userinfo_endpoint', 'end_session_endpoint']) {
      assert.ok(String(doc[key]).startsWith(publicUrl), `${key}: ${String(doc[key])}`);
    }
    assert.ok(!JSON.stringify(doc).includes('evil.example'), 'the sender\'s host appears nowhere in the document');

    const auth = await rawExchange(port, `GET http://evil.example/oidc/auth?client_id=wiki&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Frp.example.com%2Fcb&code_challenge=${'a'.repeat(43)}&code_challenge_method=S256 HTTP/1.1\r\n${head}`);
    const location = /^location: (.*)$/im.exec(auth)?.[1];
    assert.ok(location, auth);
    assert.ok(!location.includes('evil.example'), `the redirect stays on the service: ${location}`);
  });
});
