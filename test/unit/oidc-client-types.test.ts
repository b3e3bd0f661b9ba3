import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applicationType, toProviderMetadata } from '../../src/oidc/client-metadata.ts';
import { parseClientsFile } from '../../src/oidc/clients-file.ts';

const SECRET = 'x'.repeat(32);

test('an app-scheme redirect URI makes a native client; http(s), loopback included, a web one', () => {
  assert.equal(applicationType(['com.example.app:/callback', 'http://127.0.0.1/cb']), 'native');
  assert.equal(applicationType(['http://localhost:3000/cb', 'https://app.example/cb']), 'web');
  assert.equal(applicationType([]), 'web');
  const [native] = parseClientsFile(JSON.stringify([{ client_id: 'mobile', token_endpoint_auth_method: 'none', redirect_uris: ['com.example.app:/callback'], post_logout_redirect_uris: ['com.example.app:/bye'] }]));
  assert.equal(toProviderMetadata(native!).application_type, 'native');
});

test('OIDC_CLIENTS_FILE refuses what the provider could not use, naming the entry and the field', () => {
  const web = { client_id: 'app', client_secret: SECRET, redirect_uris: ['https://app.example/cb'] };
  const cases: Array<[unknown, RegExp]> = [
    [{ ...web, backchannel_logout_uri: 'com.example.app:/bcl' }, /\[0\]\.backchannel_logout_uri must be an https URL/],
    [{ ...web, backchannel_logout_uri: 'http://app.example/bcl' }, /\[0\]\.backchannel_logout_uri must be an https URL/],
    [{ ...web, post_logout_redirect_uris: ['com.example.app:/bye'] }, /\[0\]\.post_logout_redirect_uris\[0\] must be an http\(s\) URL/],
    [{ ...web, redirect_uris: ['com.example.app:/cb', 'http://app.example/cb'] }, /\[0\]\.redirect_uris\[1\] must not be plain http off loopback/],
    [{ ...web, redirect_uris: ['com.example.app:/cb', 'https://localhost/cb'] }, /\[0\]\.redirect_uris\[1\] must not be https on a loopback host/],
  ];
  for (const [entry, message] of cases) assert.throws(() => parseClientsFile(JSON.stringify([entry])), message, JSON.stringify(entry));
  // Accepted: https anywhere and loopback http for back-channel logout; claimed https beside an app scheme.
  assert.equal(parseClientsFile(JSON.stringify([{ ...web, backchannel_logout_uri: 'http://[::1]:8080/bcl' }])).length, 1);
  assert.equal(parseClientsFile(JSON.stringify([{ ...web, redirect_uris: ['com.example.app:/cb', 'https://app.example/cb', 'http://localhost/cb'] }])).length, 1);
});
