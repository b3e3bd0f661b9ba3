/**
 * The hosted forms without their scripts (scripts off, or submitted before a slow script arrived): a
 * native submission must never carry a password in the URL, where browser history, history sync and
 * every proxy's access log would keep it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { launchBrowser, startService, type Service } from './helpers.ts';

let service: Service;
let browser: Browser;

before(async () => {
  service = await startService({}, 'forms-service.log');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await service?.stop();
});

test('with scripts off, submitting the login, sign-up and reset forms sends nothing in the URL', { timeout: 120_000 }, async () => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const sent: Array<{ method: string; url: string }> = [];
  page.on('request', (r) => {
    if (r.isNavigationRequest()) sent.push({ method: r.method(), url: r.url() });
  });
  const secret = 'S3cret-Passw0rd-in-no-url';
  const forms: Array<{ path: string; fill: Record<string, string> }> = [
    { path: '/login', fill: { 'Username or email': 'alice', Password: secret } },
    { path: '/signup', fill: { Username: 'bob', Email: 'bob@example.com', Password: secret, 'Confirm password': secret } },
    { path: '/reset-password?token=abc', fill: { 'New password': secret, 'Confirm new password': secret } },
  ];
  for (const form of forms) {
    await page.goto(`${service.baseUrl}${form.path}`);
    for (const [label, value] of Object.entries(form.fill)) await page.getByLabel(label, { exact: true }).first().fill(value);
    const before = sent.length;
    await Promise.all([page.waitForEvent('requestfinished', (r) => r.isNavigationRequest()), page.keyboard.press('Enter')]);
    const submitted = sent.slice(before);
    assert.equal(submitted.length, 1, `${form.path}: one navigation on Enter: ${JSON.stringify(submitted)}`);
    assert.equal(submitted[0]!.method, 'POST', form.path);
    const keys = [...new URL(page.url()).searchParams.keys()];
    assert.ok(!page.url().includes(secret) && !keys.some((k) => k.startsWith('password') || k === 'username'), `${form.path}: ${page.url()}`);
  }
  await context.close();
});
