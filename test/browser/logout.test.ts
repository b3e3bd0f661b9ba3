/**
 * Issue 7: the account page's Log out logs out — also when the page is opened as 127.0.0.1 while
 * PUBLIC_URL is the default http://localhost:PORT — or says why it could not.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { launchBrowser, startService, type Service } from './helpers.ts';

let service: Service;
let browser: Browser;

before(async () => {
  // PUBLIC_URL '' = the default, http://localhost:PORT; the browser uses http://127.0.0.1:PORT.
  service = await startService({ PUBLIC_URL: '' }, 'logout-service.log');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await service?.stop();
});

test('Log out at 127.0.0.1 with the localhost default ends the session; a failed log-out is reported, not hidden', { timeout: 120_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  await page.goto(`${service.baseUrl}/signup`);
  await page.getByLabel('Username').fill('carol');
  await page.getByLabel('Email').fill('carol@example.com');
  await page.getByLabel('Password', { exact: true }).fill('amber meadow lighthouse 5521');
  await page.getByLabel('Confirm password').fill('amber meadow lighthouse 5521');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.waitForURL(/\/(account|login)/);
  if (page.url().includes('/login')) {
    await page.getByLabel('Username').fill('carol');
    await page.getByLabel('Password', { exact: true }).fill('amber meadow lighthouse 5521');
    await page.getByRole('button', { name: 'Log in' }).click();
  }
  await page.waitForURL(/\/account/);
  await page.getByRole('button', { name: 'Log out' }).waitFor();

  // An outage during log-out: the page must say the session is still there.
  await page.route('**/api/v1/auth-jwt/logout', (route) =>
    route.fulfill({ status: 503, contentType: 'application/problem+json', body: JSON.stringify({ status: 503, code: 'service_unavailable', title: 'Service unavailable', detail: 'The service is unavailable; try again.' }) }),
  );
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByText('You are still logged in: The service is unavailable; try again.').waitFor();
  assert.match(page.url(), /\/account/);
  await page.unroute('**/api/v1/auth-jwt/logout');

  // The real thing: same-origin request from 127.0.0.1 while PUBLIC_URL says localhost.
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(/\/login/);
  const cookies = await context.cookies();
  assert.deepEqual(cookies.filter((c) => c.name === 'access_token' || c.name === 'refresh_token'), [], 'both token cookies are gone');
  const info = await page.evaluate(async () => (await fetch('/api/v1/auth-jwt/user-info', { credentials: 'same-origin' })).status);
  assert.equal(info, 401);
  await context.close();
});
