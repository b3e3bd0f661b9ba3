/**
 * Issue 9: the account page lists the person's recent security activity — the failed attempt and
 * the logins on their account, newest first, and nothing of anyone else's.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { launchBrowser, startService, type Service } from './helpers.ts';

let service: Service;
let browser: Browser;

before(async () => {
  service = await startService({}, 'security-activity-service.log');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await service?.stop();
});

async function signUp(username: string, password: string): Promise<void> {
  const res = await fetch(`${service.baseUrl}/api/v1/user`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, email: `${username}@example.com`, password1: password, password2: password }),
  });
  assert.equal(res.status, 201);
}

test('Recent security activity shows the wrong password and the logins, newest first, only for this account', { timeout: 120_000 }, async () => {
  const password = 'amber meadow lighthouse 5521';
  await signUp('dora', password);
  await signUp('eve_other', password);
  // A wrong password for dora, and one for somebody else.
  for (const username of ['dora', 'eve_other']) {
    await fetch(`${service.baseUrl}/api/v1/auth-jwt/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password: 'not the right one at all' }) });
  }
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  await page.goto(`${service.baseUrl}/login`);
  await page.getByLabel('Username').fill('dora');
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(/\/account/);
  const section = page.getByRole('region', { name: 'Recent security activity' });
  await section.getByText('Logged in', { exact: true }).waitFor();
  const items = await section.locator('#activity li').evaluateAll((lis) => lis.map((li) => (li as HTMLElement).dataset.type));
  assert.deepEqual(items, ['login.succeeded', 'login.failed', 'user.created']);
  await section.getByText('Wrong password entered').waitFor();
  assert.equal(await section.getByRole('button', { name: 'Show more' }).isVisible(), false);
  await context.close();
});
