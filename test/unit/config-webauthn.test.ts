/** The passkey relying party from PUBLIC_URL and WEBAUTHN_RP_ID, and the start-up errors for settings browsers would refuse. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';

test('the default works out of the box: RP ID localhost, origin http://localhost:8000', () => {
  const { webauthn } = loadConfig({});
  assert.equal(webauthn.rpId, 'localhost');
  assert.equal(webauthn.origin, 'http://localhost:8000');
  assert.equal(webauthn.rpName, 'Twofold');
  assert.equal(webauthn.challengeTtlSeconds, 300);
});

test('a loopback IP in PUBLIC_URL gets RP ID localhost and the localhost origin (browsers refuse IPs)', () => {
  for (const url of ['http://127.0.0.1:8000', 'http://[::1]:8000']) {
    const { webauthn } = loadConfig({ PUBLIC_URL: url });
    assert.equal(webauthn.rpId, 'localhost', url);
    assert.equal(webauthn.origin, 'http://localhost:8000', url);
  }
});

test('a host name is its own RP ID; WEBAUTHN_RP_ID may name a parent domain', () => {
  assert.equal(loadConfig({ PUBLIC_URL: 'https://auth.example.com' }).webauthn.rpId, 'auth.example.com');
  assert.equal(loadConfig({ PUBLIC_URL: 'https://auth.example.com' }).webauthn.origin, 'https://auth.example.com');
  assert.equal(loadConfig({ PUBLIC_URL: 'https://auth.example.com', WEBAUTHN_RP_ID: 'Example.com' }).webauthn.rpId, 'example.com');
  assert.equal(loadConfig({ PRODUCT_NAME: 'Acme ID' }).webauthn.rpName, 'Acme ID');
});

test('settings that cannot work stop start-up with a message naming them', () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PUBLIC_URL: 'http://10.1.2.3:8000' }, /PUBLIC_URL's host 10\.1\.2\.3 is an IP address/],
    [{ PUBLIC_URL: 'https://auth.example.com', WEBAUTHN_RP_ID: 'other.com' }, /WEBAUTHN_RP_ID "other\.com" must be PUBLIC_URL's host/],
    [{ PUBLIC_URL: 'https://auth.example.com', WEBAUTHN_RP_ID: 'ample.com' }, /WEBAUTHN_RP_ID/],
    [{ PUBLIC_URL: 'https://auth.example.com', WEBAUTHN_RP_ID: '10.0.0.1' }, /WEBAUTHN_RP_ID must be a host name, not an IP address/],
    [{ PUBLIC_URL: 'https://auth.example.com', WEBAUTHN_RP_ID: 'https://example.com' }, /WEBAUTHN_RP_ID must be a bare host name/],
    [{ PUBLIC_URL: 'https://auth.example.com', WEBAUTHN_RP_ID: 'com' }, /WEBAUTHN_RP_ID "com" is a top-level name/],
    [{ WEBAUTHN_RP_ID: 'example.com' }, /WEBAUTHN_RP_ID "example\.com" must be PUBLIC_URL's host \(localhost\)/],
  ];
  for (const [env, message] of cases) {
    assert.throws(() => loadConfig(env), (e: unknown) => e instanceof ConfigError && message.test(e.message), JSON.stringify(env));
  }
});
