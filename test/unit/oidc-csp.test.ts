/** The provider pages' CSP: a form may lead by redirect to the client's URIs, an app's own scheme included. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formActionSource, pageCsp } from '../../src/oidc/page-policy.ts';

test('form-action names web redirect URIs by origin and app-scheme ones by scheme, never "null"', () => {
  assert.equal(formActionSource('https://app.example.com/cb?x=1'), 'https://app.example.com');
  assert.equal(formActionSource('http://127.0.0.1:8123/callback'), 'http://127.0.0.1:8123');
  // new URL('com.example.notes:/cb').origin is "null": no source at all, and Chromium refused the redirect.
  assert.equal(formActionSource('com.example.notes:/oauth/callback'), 'com.example.notes:');
  const csp = pageCsp(['com.example.notes:/oauth/callback', 'https://app.example.com/cb'].map(formActionSource));
  assert.match(csp, /form-action 'self' com\.example\.notes: https:\/\/app\.example\.com;/);
  assert.ok(!csp.includes('null'));
});
