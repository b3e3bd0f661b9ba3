import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { loadConfig } from '../../src/config.ts';
import { webRoutes } from '../../src/web/routes.ts';

async function build(t: import('node:test').TestContext) {
  const config = loadConfig({ PORT: '8000', HOST: '127.0.0.1', TRUSTED_ORIGINS: 'https://app.example.com', LOG_LEVEL: 'silent' });
  const app = Fastify();
  await app.register(webRoutes, { config });
  t.after(() => app.close());
  return app;
}

test('every page is served as HTML, uncached, with its labels and no inline script or style', async (t) => {
  const app = await build(t);
  const pages: Record<string, string[]> = {
    '/': ['Username or email', 'Password', '>Log in<', 'Security code', '>Verify<', 'Use a backup code', 'Email me a code', 'Code from the app', 'Verify and log in'],
    '/login': ['Username or email', '>Log in<'],
    '/signup': ['>Username<', '>Email<', '>Password<', '>Confirm password<', '>Sign up<'],
    '/account': ['Enable two-factor authentication', '>Log out<', 'QR code', 'Change password', 'Sessions'],
    '/forgot-password': ['>Email<', 'Send reset link'],
    '/reset-password?token=abc': ['New password', 'Confirm new password', 'data-token="abc"'],
    '/reset-password': ['This link is incomplete'],
    '/verify-email?status=ok': ['Your e-mail address is verified'],
    '/verify-email?status=invalid': ['did not work'],
    '/verify-email': ['did not work'],
    '/verify-email?token=t1': ['Verify my e-mail address', 'data-token="t1"'],
  };
  for (const [url, needles] of Object.entries(pages)) {
    const res = await app.inject({ url });
    assert.equal(res.statusCode, 200, url);
    assert.match(String(res.headers['content-type']), /^text\/html; charset=utf-8/, url);
    assert.equal(res.headers['cache-control'], 'no-store', url);
    for (const n of needles) assert.ok(res.body.includes(n), `${url} lacks ${n}`);
    assert.doesNotMatch(res.body, /<script(?![^>]*\bsrc=)[^>]*>/, `${url} has an inline script`);
    assert.doesNotMatch(res.body, /\sstyle=|<style/, `${url} has inline style`);
    assert.doesNotMatch(res.body, /\son[a-z]+=/, `${url} has an inline event handler`);
    // Every input has a visible label pointing at it.
    for (const [, id] of res.body.matchAll(/<input id="([^"]+)"/g)) {
      assert.ok(res.body.includes(`<label for="${id}"`), `${url}: input #${id} has no label`);
    }
  }
});

test('return_to is rendered only when it is allowed, and escaped', async (t) => {
  const app = await build(t);
  const ok = await app.inject({ url: '/login?return_to=' + encodeURIComponent('https://app.example.com/x?a=1&b="2"') });
  assert.ok(ok.body.includes('data-return-to="https://app.example.com/x?a=1&amp;b=%222%22"'));
  assert.ok(ok.body.includes('data-allowed-origins="http://localhost:8000 http://127.0.0.1:8000 http://[::1]:8000 https://app.example.com"'));
  assert.ok(ok.body.includes('to continue to app.example.com'));
  for (const bad of ['https://evil.example/', '//evil.example', 'javascript:alert(1)']) {
    const res = await app.inject({ url: '/login?return_to=' + encodeURIComponent(bad) });
    assert.ok(res.body.includes('data-return-to=""'), bad);
    assert.ok(!res.body.includes('evil.example'), bad);
  }
  const account = await app.inject({ url: '/account?return_to=https://app.example.com/home' });
  assert.ok(account.body.includes('href="https://app.example.com/home">Continue to app.example.com</a>'));
});

test('tokens in the URL are escaped into the page', async (t) => {
  const app = await build(t);
  const res = await app.inject({ url: '/reset-password?token=' + encodeURIComponent('"><script>alert(1)</script>') });
  assert.ok(res.body.includes('data-token="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"'));
  assert.ok(!res.body.includes('<script>alert'));
});

test('assets come from a fixed list with their types and revalidation by ETag', async (t) => {
  const app = await build(t);
  const types: Record<string, RegExp> = {
    'style.css': /^text\/css/,
    'logo.svg': /^image\/svg\+xml/,
    'common.js': /^text\/javascript/,
    'login.js': /^text\/javascript/,
    'account.js': /^text\/javascript/,
  };
  for (const [file, type] of Object.entries(types)) {
    const res = await app.inject({ url: `/assets/${file}` });
    assert.equal(res.statusCode, 200, file);
    assert.match(String(res.headers['content-type']), type, file);
    assert.equal(res.headers['cache-control'], 'no-cache');
    const etag = String(res.headers.etag);
    const again = await app.inject({ url: `/assets/${file}`, headers: { 'if-none-match': etag } });
    assert.equal(again.statusCode, 304, file);
    assert.equal(again.body, '');
  }
  for (const url of ['/assets/nope.js', '/assets/..%2Froutes.ts', '/assets/%2e%2e%2fconfig.ts', '/assets/']) {
    assert.equal((await app.inject({ url })).statusCode, 404, url);
  }
});

test('page routes stay out of the OpenAPI document', async (t) => {
  const config = loadConfig({ LOG_LEVEL: 'silent' });
  const app = Fastify();
  const seen: { url: string; hide: unknown }[] = [];
  app.addHook('onRoute', (r) => {
    seen.push({ url: r.url, hide: (r.schema as { hide?: unknown } | undefined)?.hide });
  });
  await app.register(webRoutes, { config });
  t.after(() => app.close());
  await app.ready();
  assert.ok(seen.length >= 8);
  for (const r of seen) assert.equal(r.hide, true, r.url);
});

test('every form posts: submitted before its script runs (slow network, scripts off, a password manager pressing Enter), a GET form would put the password in the URL', async (t) => {
  const app = await build(t);
  let forms = 0;
  for (const url of ['/', '/login', '/signup', '/account', '/forgot-password', '/reset-password?token=abc', '/verify-email?token=t1']) {
    const body = (await app.inject({ method: 'GET', url })).body;
    for (const tag of body.match(/<form\b[^>]*>/g) ?? []) {
      forms++;
      assert.match(tag, /\smethod="post"/, `${url}: ${tag}`);
    }
  }
  // The login, second-step and enrolment forms, sign-up, account, forgot, reset and verify: all of them seen.
  assert.ok(forms >= 12, `forms checked: ${forms}`);
});
