/** Issue 7: settings that were unsafe by default or easy to get wrong. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { noSmtpWarning } from '../../src/mail/dev-mailbox.ts';
import { openMetricsWarning } from '../../src/http/routes/metrics.ts';

const PROD = { TOTP_ENCRYPTION_KEY: 'k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', JWT_PRIVATE_KEY_FILE: '/k.pem', TOKEN_HASH_KEY: 'x', SMTP_URL: 'smtp://mail:25' };

test('NODE_ENV is read case-insensitively: "Production" is production (keys required), not a development instance', () => {
  for (const v of ['Production', 'PRODUCTION', ' production ']) {
    assert.throws(() => loadConfig({ NODE_ENV: v }), (e: unknown) => e instanceof ConfigError && /required when NODE_ENV=production/.test(e.message), v);
    assert.equal(loadConfig({ NODE_ENV: v, ...PROD }).env, 'production', v);
  }
  assert.equal(loadConfig({ NODE_ENV: 'Test' }).env, 'test');
  assert.equal(loadConfig({ NODE_ENV: '' }).env, 'development', 'empty is unset');
  // Any other value ran as development (generated keys, no mail) without a word.
  for (const v of ['prod', 'staging', 'productoin']) {
    assert.throws(() => loadConfig({ NODE_ENV: v, ...PROD }), (e: unknown) => e instanceof ConfigError && /NODE_ENV must be development, production or test/.test(e.message), v);
  }
});

test('TRUST_PROXY: false, true (= one hop, never "trust all"), a hop count, or proxy addresses/CIDRs; anything else is refused', () => {
  assert.equal(loadConfig({}).trustProxy, false);
  assert.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false);
  assert.equal(loadConfig({ TRUST_PROXY: '0' }).trustProxy, false);
  assert.equal(loadConfig({ TRUST_PROXY: 'true' }).trustProxy, 1);
  assert.equal(loadConfig({ TRUST_PROXY: '2' }).trustProxy, 2);
  assert.deepEqual(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 192.168.1.5,::1,fd00::/8,loopback' }).trustProxy, ['10.0.0.0/8', '192.168.1.5', '::1', 'fd00::/8', 'loopback']);
  // Networks that large hold clients, not only proxies: every client would choose its own address.
  for (const bad of ['everything', '10.0.0.0/33', '300.1.1.1', '10.0.0.1/8/2', '11', '0.0.0.0/0', '::/0', '0.0.0.0/0,::/0', '10.0.0.0/7', 'fc00::/7']) {
    assert.throws(() => loadConfig({ TRUST_PROXY: bad }), (e: unknown) => e instanceof ConfigError && e.message.startsWith('TRUST_PROXY'), bad);
  }
});

test('the development mailbox is on only for a plainly local instance without SMTP, or with DEV_MAILBOX=true', () => {
  assert.equal(loadConfig({}).devMailbox, true, 'default: http://localhost:8000');
  assert.equal(loadConfig({ PUBLIC_URL: 'http://127.0.0.1:9000' }).devMailbox, true);
  assert.equal(loadConfig({ PUBLIC_URL: 'https://auth.example.com' }).devMailbox, false, 'a public name: someone forgot SMTP_URL, the mailbox would hand out every reset link');
  assert.equal(loadConfig({ HOST: '0.0.0.0', PUBLIC_URL: 'http://auth.lan:8000' }).devMailbox, false);
  // Issue 7's rule is PUBLIC_URL's: listening on every interface with the localhost default keeps the
  // mailbox, and the start says loudly that it is on the network (below).
  assert.equal(loadConfig({ HOST: '0.0.0.0' }).devMailbox, true);
  assert.equal(loadConfig({ PUBLIC_URL: 'https://staging.example.com', DEV_MAILBOX: 'true' }).devMailbox, true, 'explicit');
  assert.equal(loadConfig({ DEV_MAILBOX: 'false' }).devMailbox, false);
  assert.equal(loadConfig({ SMTP_URL: 'smtp://mail:25' }).devMailbox, false);
  assert.throws(() => loadConfig({ NODE_ENV: 'production', ...PROD, DEV_MAILBOX: 'true' }), ConfigError);
  assert.throws(() => loadConfig({ SMTP_URL: 'smtp://mail:25', DEV_MAILBOX: 'true' }), ConfigError);
});

test('default PUBLIC_URL is http://localhost:PORT and the other loopback names are aliases of it; a public URL has none', () => {
  const c = loadConfig({ PORT: '8123' });
  assert.equal(c.publicUrl, 'http://localhost:8123');
  assert.deepEqual(c.loopbackAliases, ['http://127.0.0.1:8123', 'http://[::1]:8123']);
  assert.deepEqual(loadConfig({ PUBLIC_URL: 'http://127.0.0.1:8000' }).loopbackAliases, ['http://localhost:8000', 'http://[::1]:8000']);
  assert.deepEqual(loadConfig({ PUBLIC_URL: 'https://auth.example.com' }).loopbackAliases, []);
  // The default PUBLIC_URL follows HOST; an IP address there cannot carry passkeys, and start-up says so.
  assert.equal(loadConfig({ HOST: 'auth.lan' }).publicUrl, 'http://auth.lan:8000');
  assert.throws(() => loadConfig({ HOST: '192.168.1.9' }), /PUBLIC_URL's host 192\.168\.1\.9 is an IP address/);
});

test('METRICS_TOKEN must be long enough; METRICS_PORT must be another port', () => {
  assert.equal(loadConfig({}).metricsToken, undefined);
  assert.equal(loadConfig({ METRICS_TOKEN: 'a-long-metrics-token' }).metricsToken, 'a-long-metrics-token');
  assert.throws(() => loadConfig({ METRICS_TOKEN: 'short' }), ConfigError);
  assert.equal(loadConfig({ METRICS_PORT: '9464' }).metricsPort, 9464);
  assert.throws(() => loadConfig({ METRICS_PORT: '8000' }), ConfigError);
  assert.throws(() => loadConfig({ METRICS_PORT: 'x' }), ConfigError);
});

test('a start without SMTP says where the mail goes, and that the mailbox is on the network when HOST listens beyond loopback', () => {
  assert.equal(noSmtpWarning(loadConfig({ SMTP_URL: 'smtp://mail:25' })), undefined);
  assert.match(noSmtpWarning(loadConfig({}))!, /development mailbox at http:\/\/localhost:8000\/dev\/mailbox$/);
  for (const host of ['127.0.0.1', '::1', 'localhost']) assert.doesNotMatch(noSmtpWarning(loadConfig({ HOST: host }))!, /beyond this machine/, host);
  for (const host of ['0.0.0.0', '::', '192.0.2.5']) {
    assert.match(noSmtpWarning(loadConfig({ HOST: host, PUBLIC_URL: 'http://localhost:8000' }))!, /listens beyond this machine: anyone who can reach the port can read every reset link/, host);
  }
  assert.match(noSmtpWarning(loadConfig({ PUBLIC_URL: 'https://auth.example.com' }))!, /development mailbox is off/);
});

test('a production start that serves /metrics to anyone on the public port warns; a token, a port or a development instance does not', () => {
  const open = openMetricsWarning(loadConfig({ NODE_ENV: 'production', ...PROD }));
  assert.match(open ?? '', /METRICS_TOKEN/);
  assert.match(open ?? '', /METRICS_PORT/);
  assert.equal(openMetricsWarning(loadConfig({ NODE_ENV: 'production', ...PROD, METRICS_TOKEN: 'a-metrics-token-of-some-length' })), undefined);
  assert.equal(openMetricsWarning(loadConfig({ NODE_ENV: 'production', ...PROD, METRICS_PORT: '9100' })), undefined);
  assert.equal(openMetricsWarning(loadConfig({ NODE_ENV: 'development' })), undefined);
});
