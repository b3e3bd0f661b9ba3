/**
 * Passkeys in Debian's Chromium with the DevTools virtual authenticator (WebAuthn.addVirtualAuthenticator
 * over a CDP session): add one on the account page, rename it, log out, sign in with it passwordless,
 * then as the second step after a password; remove it; readable errors for a refused prompt and for a
 * passkey the service no longer knows; and the note shown at 127.0.0.1, where browsers refuse passkeys.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { DESKTOP, launchBrowser, screenshot, startService, type Service } from './helpers.ts';

const USER = { username: 'dana', email: 'dana@example.com', password: 'quartz orchard ferry 8142' };
const T = { timeout: 180_000 };

let service: Service;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let cdp: CDPSession;
let authenticatorId = '';
/** The address passkeys work at: PUBLIC_URL is the default http://localhost:PORT. */
let origin = '';
const pageErrors: string[] = [];

async function accountLoaded(p: Page): Promise<void> {
  await p.waitForURL(/\/account(\?|$)/);
  await p.getByRole('heading', { name: 'Profile' }).waitFor();
}

async function logOut(p: Page): Promise<void> {
  await p.getByRole('button', { name: 'Log out' }).click();
  await p.waitForURL(/\/login$/);
}

/** The credentials the virtual authenticator holds. */
async function credentialsInAuthenticator(): Promise<Array<{ credentialId: string; isResidentCredential: boolean; signCount: number }>> {
  return (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
}

before(async () => {
  service = await startService({ PUBLIC_URL: '' }, 'passkeys-service.log');
  origin = service.baseUrl.replace('127.0.0.1', 'localhost');
  const res = await fetch(`${service.baseUrl}/api/v1/user`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: USER.username, email: USER.email, password1: USER.password, password2: USER.password }),
  });
  assert.equal(res.status, 201, await res.text());
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: DESKTOP, baseURL: origin });
  // The virtual authenticator answers a conditional (autofill) request at once, where a person would
  // pick the passkey from the username field's suggestions. A tab can switch autofill off for the
  // tests of the button and of the second step (sessionStorage, set below).
  // (A string, not a function: tsx would wrap a function's inner functions in a helper the page lacks.)
  await context.addInitScript({
    content: `if (sessionStorage.getItem('test:no-autofill') === '1') {
      Object.defineProperty(PublicKeyCredential, 'isConditionalMediationAvailable', { value: () => Promise.resolve(false), configurable: true });
    }`,
  });
  page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (err) => pageErrors.push(err.message));
  cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  ({ authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  }));
});

after(async () => {
  await browser?.close();
  await service?.stop();
});

test('add a passkey on the account page (first factor: backup codes shown), rename it', T, async () => {
  await page.goto('/login');
  await page.getByLabel('Username or email').fill(USER.username);
  await page.getByLabel('Password', { exact: true }).fill(USER.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await accountLoaded(page);
  await page.locator('#passkey-badge').filter({ hasText: 'None' }).waitFor();

  await page.getByRole('button', { name: 'Add a passkey' }).click();
  await page.getByText(/Passkey “.+” added/).waitFor();
  await page.getByRole('heading', { name: 'Save your backup codes' }).waitFor();
  assert.equal(await page.locator('#backup-codes li').count(), 10, 'the first factor brings 10 backup codes');
  await page.getByRole('button', { name: 'I have saved them' }).click();
  const row = page.locator('#passkeys li');
  await row.first().waitFor();
  assert.equal(await row.count(), 1);
  assert.match(await row.innerText(), /Chrome on Linux/);
  assert.match(await row.innerText(), /never used/);
  assert.match(await row.innerText(), /This device only|Synced|Can be synced/);
  await page.locator('#passkey-badge').filter({ hasText: '1 passkey' }).waitFor();

  const held = await credentialsInAuthenticator();
  assert.equal(held.length, 1);
  assert.equal(held[0]!.isResidentCredential, true, 'a discoverable credential');

  await row.getByRole('button', { name: /Rename/ }).click();
  await page.getByLabel('New name').fill('Work laptop');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#passkeys li .passkey-name').filter({ hasText: 'Work laptop' }).waitFor();
  await screenshot(page, 'account-passkeys');
  // A factor now exists: a password alone no longer logs in.
  const status = await page.evaluate(async (u) => (await fetch('/api/v1/auth-jwt/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(u), credentials: 'omit' })).status, { username: USER.username, password: USER.password });
  assert.equal(status, 403);
});

test('log out: the login page offers the passkey as autofill (conditional mediation), which signs in', T, async () => {
  const before = (await credentialsInAuthenticator())[0]!.signCount;
  const autofill = page.waitForRequest((r) => r.url().endsWith('/api/v1/auth-jwt/login/passkey/options') && r.postData() === '{}');
  await page.getByRole('button', { name: 'Log out' }).click();
  await autofill;
  // No click: the virtual authenticator picked the passkey offered to the username field.
  await accountLoaded(page);
  assert.ok((await credentialsInAuthenticator())[0]!.signCount > before, 'signed by the authenticator');
});

test('log out, then sign in with the passkey alone from the button (discoverable credential)', T, async () => {
  await page.evaluate(() => sessionStorage.setItem('test:no-autofill', '1'));
  await logOut(page);
  const username = page.getByLabel('Username or email');
  assert.equal(await username.getAttribute('autocomplete'), 'username webauthn', 'autofill offers passkeys in the username field');
  await screenshot(page, 'login-passkey');
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await accountLoaded(page);
  await page.locator('#passkeys li').filter({ hasText: 'last used' }).waitFor();
  const sessions = await page.evaluate(async () => (await fetch('/api/v1/auth-jwt/sessions')).json());
  assert.ok(Array.isArray(sessions) && sessions.length >= 1);
  assert.ok((await credentialsInAuthenticator())[0]!.signCount >= 1, 'the authenticator signed');
});

test('passkey as the second step after the password', T, async () => {
  await logOut(page);
  await page.getByLabel('Username or email').fill(USER.username);
  await page.getByLabel('Password', { exact: true }).fill(USER.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  const use = page.getByRole('button', { name: 'Use your passkey' });
  await use.waitFor();
  assert.ok(await page.getByRole('button', { name: 'Use a backup code' }).isVisible(), 'the backup code stays on offer');
  await screenshot(page, 'login-mfa-passkey');
  await use.click();
  await accountLoaded(page);
});

test('readable errors: a refused prompt, and a passkey the service no longer knows', T, async () => {
  // Remove it from the account (this session passed the passkey: aal2).
  const row = page.locator('#passkeys li');
  await row.getByRole('button', { name: /Remove/ }).click();
  await row.getByRole('button', { name: 'Remove', exact: true }).click();
  await page.getByText('Passkey “Work laptop” removed.').waitFor();
  await page.locator('#passkey-badge').filter({ hasText: 'None' }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll('#passkeys li').length === 0);

  await logOut(page);
  // The authenticator still holds the credential: the service refuses it with a sentence, not a dead end.
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await page.getByText('That passkey was not accepted').waitFor();

  // A prompt the person does not confirm (no user verification): NotAllowedError, said plainly.
  await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: false });
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await page.getByText(/No passkey was used: the prompt was closed or timed out/).waitFor();
  await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: true });
  // Still usable: the password form works.
  await page.getByLabel('Username or email').fill(USER.username);
  await page.getByLabel('Password', { exact: true }).fill(USER.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await accountLoaded(page);
  assert.deepEqual(pageErrors, []);
});

test('at 127.0.0.1 the pages say where passkeys work instead of failing', T, async () => {
  const other = await browser.newPage();
  await other.goto(`${service.baseUrl}/login`);
  await other.getByText(`Passkeys work only at ${origin}.`).waitFor();
  assert.equal(await other.getByRole('button', { name: 'Sign in with a passkey' }).isVisible(), false);
  assert.equal(await other.getByRole('link', { name: `Open ${origin}` }).getAttribute('href'), `${origin}/login`);
  await other.close();
});
