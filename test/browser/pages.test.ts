/**
 * End-to-end tests of the hosted pages in headless Chromium against the real service process:
 * sign-up, TOTP enrolment from the QR code, login with a code and with backup codes, keyboard-only
 * use, return_to, password reset, e-mail verification, account management and the CSP.
 * Screenshots of every page go to test-results/ (ignored); `npm run screenshots` also copies login and account to docs/screenshots/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type * as OTPAuth from 'otpauth';
import {
  DESKTOP,
  PHONE,
  ROOT,
  RESULTS_DIR,
  decodeQrDataUrl,
  launchBrowser,
  linkIn,
  mailIds,
  screenshot,
  startService,
  totpFromUri,
  waitForMail,
  type Service,
} from './helpers.ts';

const TRUSTED_APP = 'http://127.0.0.1:9';
const ALICE = { username: 'alice', email: 'alice@example.com', password: 'correct horse battery staple 42' };
const BOB = { username: 'bob_builder', email: 'bob@example.com', password: 'tangerine kettle mountain 1987' };
const BOB_NEW_PASSWORD = 'violet harbour lantern 2031';
const BOB_RESET_PASSWORD = 'saffron glacier compass 4477';
const T = { timeout: 120_000 };

let service: Service;
let browser: Browser;
/** Alice's browser: one context whose cookies carry her session through the journey. */
let alice: BrowserContext;
let page: Page;
let totp: OTPAuth.TOTP;
/** The 30-second step of the last TOTP code used, to pick a later one next time. */
let lastStep = 0;
let backupCodes: string[] = [];
/** Content-Security-Policy violations reported by any page. */
const cspViolations: string[] = [];

function watchCsp(p: Page): void {
  p.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy/i.test(msg.text())) cspViolations.push(`${p.url()}: ${msg.text()}`);
  });
  p.on('pageerror', (err) => cspViolations.push(`${p.url()}: script error ${err.message}`));
}

async function newPage(context: BrowserContext): Promise<Page> {
  const p = await context.newPage();
  p.setDefaultTimeout(15_000);
  watchCsp(p);
  return p;
}

/** A TOTP code for a later time step than any used before (accepted within one step either side). */
function nextTotpCode(): string {
  const step = Math.max(Math.floor(Date.now() / 30_000), lastStep + 1);
  lastStep = step;
  return totp.generate({ timestamp: step * 30_000 });
}

async function logInWithPassword(p: Page, username: string, password: string): Promise<void> {
  await p.getByLabel('Username').fill(username);
  await p.getByLabel('Password', { exact: true }).fill(password);
  await p.getByRole('button', { name: 'Log in' }).click();
}

async function logOut(p: Page): Promise<void> {
  await p.getByRole('button', { name: 'Log out' }).click();
  await p.waitForURL(/\/login$/);
}

async function accountLoaded(p: Page): Promise<void> {
  await p.waitForURL(/\/account(\?|$)/);
  await p.getByRole('heading', { name: 'Profile' }).waitFor();
}

/** Signs a user up through the JSON API, for scenarios that do not test the sign-up page. */
async function signUpByApi(user: { username: string; email: string; password: string }, baseUrl = service.baseUrl): Promise<void> {
  const res = await fetch(`${baseUrl}/api/v1/user`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ username: user.username, email: user.email, password1: user.password, password2: user.password }),
  });
  assert.equal(res.status, 201, await res.text());
}

describe('hosted pages in a real browser', { timeout: 900_000 }, () => {
  before(async () => {
    await mkdir(RESULTS_DIR, { recursive: true });
    // No cooldown between e-mailed codes: the run asks for two within seconds.
    service = await startService({ TRUSTED_ORIGINS: TRUSTED_APP, EMAIL_OTP_COOLDOWN: '0' });
    browser = await launchBrowser();
    alice = await browser.newContext({ viewport: DESKTOP, baseURL: service.baseUrl });
    await alice.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: service.baseUrl });
    page = await newPage(alice);
  });

  after(async () => {
    await browser?.close();
    await service?.stop();
  });

  test('pages carry a CSP without inline scripts that forbids framing', T, async () => {
    for (const path of ['/', '/login', '/signup', '/account', '/forgot-password', '/reset-password?token=x', '/verify-email?status=ok']) {
      const res = await fetch(`${service.baseUrl}${path}`);
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get('content-type') ?? '', /^text\/html/, path);
      const csp = res.headers.get('content-security-policy') ?? '';
      const directives = new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([name = '', ...values]) => [name, values]));
      const scriptSrc = directives.get('script-src') ?? directives.get('default-src');
      assert.ok(scriptSrc, `${path}: no script-src in "${csp}"`);
      assert.ok(!scriptSrc.includes("'unsafe-inline'") && !scriptSrc.includes("'unsafe-eval'"), `${path}: ${csp}`);
      assert.deepEqual(directives.get('frame-ancestors'), ["'none'"], `${path}: ${csp}`);
    }
  });

  test('sign up: inline errors from the API, then an account', T, async () => {
    await page.goto('/signup');
    await screenshot(page, 'signup');
    await page.getByLabel('Username').fill(ALICE.username);
    await page.getByLabel('Email').fill(ALICE.email);
    await page.getByLabel('Password', { exact: true }).fill(ALICE.password);
    await page.getByLabel('Confirm password').fill('a different passphrase 42');
    await page.getByRole('button', { name: 'Sign up' }).click();

    const confirm = page.getByLabel('Confirm password');
    await assert.doesNotReject(page.locator('#password2-error').filter({ hasText: /\S/ }).waitFor(), 'no inline error next to Confirm password');
    assert.equal(await confirm.getAttribute('aria-invalid'), 'true');
    assert.match(await page.getByRole('alert').innerText(), /\S/);
    await screenshot(page, 'signup-errors');

    await confirm.fill(ALICE.password);
    await page.getByRole('button', { name: 'Sign up' }).click();
    await accountLoaded(page);
    await page.getByRole('status').filter({ hasText: /verify your address/ }).waitFor();
    assert.equal(await page.locator('#profile-username').innerText(), ALICE.username);
    assert.equal(await page.locator('#profile-email').innerText(), ALICE.email);
  });

  test('enable TOTP from the QR code on the page and receive 10 backup codes', T, async () => {
    await page.locator('#totp-badge').filter({ hasText: 'Off' }).waitFor();
    await screenshot(page, 'account-2fa-off');
    await page.getByRole('button', { name: 'Enable two-factor authentication' }).click();

    const qr = page.getByRole('img', { name: /QR code/ });
    await qr.waitFor();
    await page.waitForFunction(() => (document.getElementById('totp-qr') as HTMLImageElement | null)?.src.startsWith('data:image/png'));
    const uri = decodeQrDataUrl((await qr.getAttribute('src')) ?? '');
    assert.match(uri, /^otpauth:\/\/totp\//);
    totp = totpFromUri(uri);
    assert.equal(totp.label, ALICE.username);
    const shownSecret = (await page.locator('#totp-secret').innerText()).replace(/\s+/g, '');
    assert.equal(shownSecret, totp.secret.base32, 'the secret shown for manual entry is the one in the QR code');
    await screenshot(page, 'account-enroll-totp');

    await page.getByLabel('Security code').fill(nextTotpCode());
    await page.getByRole('button', { name: 'Verify', exact: true }).click();
    const codes = page.locator('#backup-codes li');
    await codes.nth(9).waitFor();
    backupCodes = (await codes.allInnerTexts()).map((c) => c.trim());
    assert.equal(backupCodes.length, 10);
    assert.equal(new Set(backupCodes).size, 10);
    await screenshot(page, 'account-backup-codes');

    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download' }).click()]);
    const file = await readFile((await download.path()) ?? '', 'utf8');
    for (const c of backupCodes) assert.ok(file.includes(c), 'the downloaded file lists every code');
    await page.getByRole('button', { name: 'Copy' }).click();
    await page.locator('#backup-status').filter({ hasText: 'Copied' }).waitFor();
    assert.equal((await page.evaluate(() => navigator.clipboard.readText())).trim(), backupCodes.join('\n'));

    await page.getByRole('button', { name: 'I have saved them' }).click();
    assert.equal(await page.locator('#backup-codes li').count(), 0, 'codes are not left on the page');
    await page.locator('#totp-badge').filter({ hasText: 'On' }).waitFor();
    await page.locator('#backup-badge').filter({ hasText: '10 left' }).waitFor();
    await page.locator('#sessions li').filter({ hasText: 'This device' }).waitFor();
  });

  test('log out, then a wrong password is refused with a readable message', T, async () => {
    await logOut(page);
    await logInWithPassword(page, ALICE.username, 'not my password at all');
    const alert = page.getByRole('alert');
    await alert.waitFor();
    const text = await alert.innerText();
    assert.match(text, /password/i);
    assert.doesNotMatch(text, /invalid_credentials|\{|HTTP/);
    assert.ok(await page.getByLabel('Username').isVisible(), 'still on the first screen');
    await screenshot(page, 'login-wrong-password');
  });

  test('log in with a TOTP code on the second screen', T, async () => {
    await page.goto('/login');
    await logInWithPassword(page, ALICE.username, ALICE.password);
    const code = page.getByLabel('Security code');
    await code.waitFor();
    await screenshot(page, 'login-security-code');

    const good = nextTotpCode();
    await code.fill(good === '000000' ? '111111' : '000000');
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.getByRole('alert').filter({ hasText: /code/i }).waitFor();
    assert.ok(await code.isVisible(), 'a wrong code keeps the second screen');
    await screenshot(page, 'login-wrong-code');

    await code.fill(good);
    await page.getByRole('button', { name: 'Verify' }).click();
    await accountLoaded(page);
    await page.locator('#totp-badge').filter({ hasText: 'On' }).waitFor();
  });

  test('with a second-factor session, backup codes can be regenerated', T, async () => {
    await page.getByRole('button', { name: 'Generate new backup codes' }).click();
    const codes = page.locator('#backup-codes li');
    await codes.nth(9).waitFor();
    const fresh = (await codes.allInnerTexts()).map((c) => c.trim());
    assert.equal(fresh.length, 10);
    assert.ok(!fresh.includes(backupCodes[0] ?? ''), 'new codes differ from the old ones');
    backupCodes = fresh;
    await page.getByRole('button', { name: 'I have saved them' }).click();
    await page.locator('#backup-badge').filter({ hasText: '10 left' }).waitFor();
  });

  test('account and login screenshots: desktop, phone, dark', T, async () => {
    await page.goto('/account');
    await accountLoaded(page);
    await page.locator('#sessions li').first().waitFor();
    await screenshot(page, 'account-desktop');
    await page.setViewportSize(PHONE);
    await screenshot(page, 'account-phone');
    await page.emulateMedia({ colorScheme: 'dark' });
    await screenshot(page, 'account-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize(DESKTOP);

    const visitor = await browser.newContext({ baseURL: service.baseUrl, viewport: DESKTOP });
    const p = await newPage(visitor);
    await p.goto('/login');
    await screenshot(p, 'login-desktop');
    await p.setViewportSize(PHONE);
    await screenshot(p, 'login-phone');
    await p.emulateMedia({ colorScheme: 'dark' });
    await screenshot(p, 'login-dark');
    await visitor.close();
  });

  test('log out, then log in with a backup code', T, async () => {
    await logOut(page);
    await logInWithPassword(page, ALICE.username, ALICE.password);
    await page.getByLabel('Security code').waitFor();
    await page.getByRole('button', { name: 'Use a backup code' }).click();
    const field = page.getByLabel('Backup code');
    await field.waitFor();
    await screenshot(page, 'login-backup-code');
    await field.fill(backupCodes[0] ?? '');
    await page.getByRole('button', { name: 'Verify' }).click();
    // The login page says how many codes are left before going on (issue 7, item 13).
    await page.getByText('You used a backup code. You have 9 backup codes left.').waitFor();
    await page.getByRole('button', { name: 'Continue' }).click();
    await accountLoaded(page);
    await page.locator('#backup-badge').filter({ hasText: '9 left' }).waitFor();
  });

  test('keyboard only: log out, log in with Tab and Enter and a backup code', T, async () => {
    const focusedId = () => page.evaluate(() => document.activeElement?.id ?? '');
    const focusedText = () => page.evaluate(() => (document.activeElement as HTMLElement | null)?.innerText?.trim() ?? '');
    const tabTo = async (matches: () => Promise<boolean>, what: string) => {
      for (let i = 0; i < 25; i++) {
        if (await matches()) return;
        await page.keyboard.press('Tab');
      }
      assert.fail(`Tab never reached ${what}`);
    };

    await page.locator('#sessions li').first().waitFor();
    await tabTo(async () => (await focusedId()) === 'logout', 'the Log out button');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/login$/);

    await tabTo(async () => (await focusedId()) === 'username', 'the username field');
    await page.keyboard.type(ALICE.username);
    await page.keyboard.press('Tab');
    assert.equal(await focusedId(), 'password');
    await page.keyboard.type(ALICE.password);
    await page.keyboard.press('Enter');

    await page.getByLabel('Security code').waitFor();
    assert.equal(await focusedId(), 'code', 'the code field has the focus on the second screen');
    await tabTo(async () => (await focusedText()) === 'Use a backup code', 'Use a backup code');
    await page.keyboard.press('Enter');
    await page.getByLabel('Backup code').waitFor();
    assert.equal(await focusedId(), 'code');
    await page.keyboard.type(backupCodes[1] ?? '');
    await page.keyboard.press('Enter');
    await page.getByText(/You have 8 backup codes left/).waitFor();
    await tabTo(async () => (await focusedId()) === 'after-login-continue', 'the Continue button');
    await page.keyboard.press('Enter');
    await accountLoaded(page);
  });

  test('the e-mail verification link lands on a page that says it worked', T, async () => {
    const mail = await waitForMail(service.baseUrl, new Set(), (m) => m.to.includes(ALICE.email) && /verif/i.test(`${m.kind} ${m.subject}`));
    const link = linkIn(mail, 'token=');
    const p = await newPage(alice);
    // Opening the link only shows a button (a mail scanner's GET must not spend the token); the click verifies.
    await p.goto(link);
    await p.getByRole('button', { name: 'Verify my e-mail address' }).click();
    await p.waitForURL(/\/verify-email\?status=ok/);
    await p.getByRole('heading', { name: 'Your e-mail address is verified' }).waitFor();
    await screenshot(p, 'verify-email-ok');
    await p.goto(link);
    await p.getByRole('button', { name: 'Verify my e-mail address' }).click();
    await p.waitForURL(/\/verify-email\?status=/);
    await p.getByRole('heading', { name: /did not work/ }).waitFor();
    await screenshot(p, 'verify-email-invalid');
    await p.close();
    await page.reload();
    await accountLoaded(page);
    await page.locator('#profile-email-badge').filter({ hasText: /^Verified$/ }).waitFor();
  });

  test('e-mail codes: turn on, log in with one, turn off; authenticator app off', T, async () => {
    const seen = await mailIds(service.baseUrl);
    await page.getByRole('button', { name: 'Enable e-mail codes' }).click();
    const field = page.getByLabel('Code from the e-mail');
    await field.waitFor();
    const mail = await waitForMail(service.baseUrl, seen, (m) => m.to.includes(ALICE.email));
    const code = /\b(\d{6})\b/.exec(mail.text)?.[1];
    assert.ok(code, `no code in "${mail.text}"`);
    await field.fill(code);
    await page.getByRole('button', { name: 'Verify code' }).click();
    await page.locator('#email-otp-badge').filter({ hasText: 'On' }).waitFor();
    await screenshot(page, 'account-email-codes-on');

    await logOut(page);
    await logInWithPassword(page, ALICE.username, ALICE.password);
    await page.getByLabel('Security code').waitFor();
    const seenBeforeLogin = await mailIds(service.baseUrl);
    await page.getByRole('button', { name: 'Email me a code' }).click();
    const mailed = page.getByLabel('Code from the e-mail');
    await mailed.waitFor();
    await page.getByRole('status').filter({ hasText: 'We sent a code' }).waitFor();
    await screenshot(page, 'login-email-code');
    const loginMail = await waitForMail(service.baseUrl, seenBeforeLogin, (m) => m.to.includes(ALICE.email));
    const loginCode = /\b(\d{6})\b/.exec(loginMail.text)?.[1];
    assert.ok(loginCode, `no code in "${loginMail.text}"`);
    await mailed.fill(loginCode);
    await page.getByRole('button', { name: 'Verify' }).click();
    await accountLoaded(page);

    await page.getByRole('button', { name: 'Turn off e-mail codes' }).click();
    await page.locator('#email-otp-badge').filter({ hasText: 'Off' }).waitFor();

    await page.getByRole('button', { name: 'Turn off authenticator app' }).click();
    await page.getByLabel('Your password').fill('wrong password here');
    await page.getByRole('button', { name: 'Turn off', exact: true }).click();
    await page.locator('#totp-disable-password-error').filter({ hasText: /\S/ }).waitFor();
    await page.getByLabel('Your password').fill(ALICE.password);
    await page.getByRole('button', { name: 'Turn off', exact: true }).click();
    await page.locator('#totp-badge').filter({ hasText: 'Off' }).waitFor();
    await page.getByRole('button', { name: 'Enable two-factor authentication' }).waitFor();
  });

  test('the account page renews an expired access token, and sends a logged-out visitor to the login page', T, async () => {
    await alice.clearCookies({ name: 'access_token' });
    await page.goto('/account');
    await accountLoaded(page);
    assert.equal(await page.locator('#profile-username').innerText(), ALICE.username);
    assert.ok((await alice.cookies()).some((c) => c.name === 'access_token'), 'the refresh set a new access cookie');

    await alice.clearCookies();
    await page.goto('/account');
    await page.waitForURL(/\/login\?return_to=/);
    assert.equal(await page.locator('main').getAttribute('data-return-to'), `${service.baseUrl}/account`);
  });

  test('return_to: a foreign origin is ignored, a trusted one is honoured', T, async () => {
    await signUpByApi(BOB);
    const context = await browser.newContext({ baseURL: service.baseUrl, viewport: DESKTOP });
    const p = await newPage(context);
    let evilVisited = false;
    await context.route('https://evil.example/**', (route) => {
      evilVisited = true;
      return route.fulfill({ status: 200, contentType: 'text/html', body: '<h1>evil</h1>' });
    });
    await context.route(`${TRUSTED_APP}/**`, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<h1>The application</h1>' }));

    await p.goto(`/login?return_to=${encodeURIComponent('https://evil.example/')}`);
    assert.equal(await p.locator('main').getAttribute('data-return-to'), '');
    await logInWithPassword(p, BOB.username, BOB.password);
    await accountLoaded(p);
    assert.equal(evilVisited, false);
    await logOut(p);

    const target = `${TRUSTED_APP}/after-login?next=%2Fdashboard`;
    await p.goto(`/login?return_to=${encodeURIComponent(target)}`);
    await p.getByText('to continue to 127.0.0.1:9').waitFor();
    await logInWithPassword(p, BOB.username, BOB.password);
    await p.waitForURL(target);
    assert.equal(await p.getByRole('heading').innerText(), 'The application');
    await context.close();
  });

  test('sessions: another device is listed and can be revoked; the password can be changed', T, async () => {
    // A second session, from "another device".
    const other = await fetch(`${service.baseUrl}/api/v1/auth-jwt/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'User-Agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1' },
      body: JSON.stringify({ username: BOB.username, password: BOB.password }),
    });
    assert.equal(other.status, 200);
    const { access_token: otherToken } = (await other.json()) as { access_token: string };

    const context = await browser.newContext({ baseURL: service.baseUrl, viewport: DESKTOP });
    const p = await newPage(context);
    await p.goto('/login');
    await logInWithPassword(p, BOB.username, BOB.password);
    await accountLoaded(p);
    await p.locator('#sessions li').filter({ hasText: 'This device' }).waitFor();
    const phone = p.locator('#sessions li').filter({ hasText: 'Safari on iOS' });
    await phone.waitFor();
    await screenshot(p, 'account-sessions');
    await phone.getByRole('button', { name: /Revoke/ }).click();
    await phone.waitFor({ state: 'detached' });
    await p.locator('#sessions li').filter({ hasText: 'This device' }).waitFor();
    const revoked = await fetch(`${service.baseUrl}/api/v1/auth-jwt/user-info`, { headers: { Authorization: `Bearer ${otherToken}` } });
    assert.equal(revoked.status, 401, 'the revoked session no longer works');

    await p.getByLabel('Current password').fill('not the password');
    await p.getByLabel('New password', { exact: true }).fill(BOB_NEW_PASSWORD);
    await p.getByLabel('Confirm new password').fill(BOB_NEW_PASSWORD);
    await p.getByRole('button', { name: 'Change password' }).click();
    await p.locator('#current_password-error').filter({ hasText: /\S/ }).waitFor();
    await p.getByLabel('Current password').fill(BOB.password);
    await p.getByRole('button', { name: 'Change password' }).click();
    await p.locator('#password-status').filter({ hasText: 'Your password has been changed' }).waitFor();
    await context.close();
  });

  test('forgot password: the e-mailed link opens the reset page, the new password works', T, async () => {
    const context = await browser.newContext({ baseURL: service.baseUrl, viewport: DESKTOP });
    const p = await newPage(context);
    await p.goto('/login');
    await p.getByRole('link', { name: 'Forgot your password?' }).click();
    await p.waitForURL(/\/forgot-password$/);
    await screenshot(p, 'forgot-password');
    const seen = await mailIds(service.baseUrl);
    await p.getByLabel('Email').fill(BOB.email);
    await p.getByRole('button', { name: 'Send reset link' }).click();
    await p.getByRole('status').filter({ hasText: 'we sent it a link' }).waitFor();
    await screenshot(p, 'forgot-password-sent');

    const mail = await waitForMail(service.baseUrl, seen, (m) => m.to.includes(BOB.email));
    const link = linkIn(mail, 'token=');
    await p.goto(link);
    await p.waitForURL(/\/reset-password$/); // the token leaves the address bar
    await screenshot(p, 'reset-password');
    await p.getByLabel('New password', { exact: true }).fill(BOB_RESET_PASSWORD);
    await p.getByLabel('Confirm new password').fill(BOB_RESET_PASSWORD + 'x');
    await p.getByRole('button', { name: 'Set new password' }).click();
    await p.locator('#password2-error').filter({ hasText: /\S/ }).waitFor();
    await p.getByLabel('Confirm new password').fill(BOB_RESET_PASSWORD);
    await p.getByRole('button', { name: 'Set new password' }).click();
    await p.getByRole('status').filter({ hasText: 'Your password has been changed' }).waitFor();
    await screenshot(p, 'reset-password-done');

    await p.getByRole('link', { name: 'Log in with your new password' }).click();
    await logInWithPassword(p, BOB.username, BOB_RESET_PASSWORD);
    await accountLoaded(p);

    await p.goto(link.replace(/token=[^&]+/, 'token=used-or-made-up'));
    await p.getByLabel('New password', { exact: true }).fill(BOB_RESET_PASSWORD);
    await p.getByLabel('Confirm new password').fill(BOB_RESET_PASSWORD);
    await p.getByRole('button', { name: 'Set new password' }).click();
    await p.getByRole('alert').filter({ hasText: /invalid|expired/ }).waitFor();
    await context.close();
  });

  test('a locked account gets a readable "wait" message from the 429 and its Retry-After', T, async () => {
    const eve = { username: 'eve', email: 'eve@example.com', password: 'quartz meadow bicycle 6060' };
    await signUpByApi(eve);
    let status = 0;
    for (let i = 0; i < 30 && status !== 429; i++) {
      const res = await fetch(`${service.baseUrl}/api/v1/auth-jwt/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username: eve.username, password: 'not the right one' }),
      });
      status = res.status;
    }
    assert.equal(status, 429, 'the account locks after repeated failures');
    const context = await browser.newContext({ baseURL: service.baseUrl, viewport: DESKTOP });
    const p = await newPage(context);
    await p.goto('/login');
    await logInWithPassword(p, eve.username, eve.password);
    await p.getByRole('alert').filter({ hasText: /Too many attempts\. Please wait \d+ (seconds?|minutes?)/ }).waitFor();
    await screenshot(p, 'login-too-many-attempts');
    await context.close();
  });

  test('verification and second factor required: sign-up explains, the login page enrols an authenticator app', T, async () => {
    const strict = await startService({ MFA_POLICY: 'required', REQUIRE_EMAIL_VERIFICATION: 'true' }, 'service-strict.log');
    try {
      const carol = { username: 'carol', email: 'carol@example.com', password: 'marble orchard whistle 5150' };
      const context = await browser.newContext({ baseURL: strict.baseUrl, viewport: DESKTOP });
      const p = await newPage(context);
      await p.goto('/signup');
      await p.getByLabel('Username').fill(carol.username);
      await p.getByLabel('Email').fill(carol.email);
      await p.getByLabel('Password', { exact: true }).fill(carol.password);
      await p.getByLabel('Confirm password').fill(carol.password);
      await p.getByRole('button', { name: 'Sign up' }).click();
      await p.getByRole('status').filter({ hasText: 'Check your inbox' }).waitFor();
      await screenshot(p, 'signup-check-inbox');

      await p.getByRole('status').getByRole('link', { name: 'log in' }).click();
      await logInWithPassword(p, carol.username, carol.password);
      await p.getByRole('alert').filter({ hasText: /verify/i }).waitFor();

      const mail = await waitForMail(strict.baseUrl, new Set(), (m) => m.to.includes(carol.email));
      await p.goto(linkIn(mail, 'token='));
      await p.getByRole('button', { name: 'Verify my e-mail address' }).click();
      await p.getByRole('heading', { name: 'Your e-mail address is verified' }).waitFor();

      await p.goto('/login');
      await logInWithPassword(p, carol.username, carol.password);
      const qr = p.getByRole('img', { name: /QR code/ });
      await qr.waitFor();
      await p.waitForFunction(() => (document.getElementById('enroll-qr') as HTMLImageElement | null)?.src.startsWith('data:image/png'));
      const otp = totpFromUri(decodeQrDataUrl((await qr.getAttribute('src')) ?? ''));
      assert.equal((await p.locator('#enroll-secret').innerText()).replace(/\s+/g, ''), otp.secret.base32);
      await screenshot(p, 'login-enroll-required');
      await p.getByLabel('Code from the app').fill(otp.generate());
      await p.getByRole('button', { name: 'Verify and log in' }).click();
      // The enrolment by login turned on the first factor: its backup codes are shown once (issue 7, item 13).
      await p.getByRole('heading', { name: 'Save your backup codes' }).waitFor();
      assert.equal(await p.locator('#login-codes li').count(), 10);
      await p.getByRole('button', { name: 'Continue' }).click();
      await accountLoaded(p);
      await p.locator('#totp-badge').filter({ hasText: 'On' }).waitFor();
      await context.close();
    } finally {
      await strict.stop();
    }
  });

  test('second factor required: sign-up goes straight into enrolment, shows the backup codes; a backup-code login says how many are left', T, async () => {
    const strict = await startService({ MFA_POLICY: 'required' }, 'service-required.log');
    try {
      const dave = { username: 'dave', email: 'dave@example.com', password: 'copper lantern meadow 8080' };
      const context = await browser.newContext({ baseURL: strict.baseUrl, viewport: DESKTOP });
      const p = await newPage(context);
      await p.goto('/signup');
      await p.getByLabel('Username').fill(dave.username);
      await p.getByLabel('Email').fill(dave.email);
      await p.getByLabel('Password', { exact: true }).fill(dave.password);
      await p.getByLabel('Confirm password').fill(dave.password);
      await p.getByRole('button', { name: 'Sign up' }).click();
      const qr = p.getByRole('img', { name: /QR code/ });
      await qr.waitFor();
      await p.waitForFunction(() => (document.getElementById('signup-enroll-qr') as HTMLImageElement | null)?.src.startsWith('data:image/png'));
      const otp = totpFromUri(decodeQrDataUrl((await qr.getAttribute('src')) ?? ''));
      await p.getByLabel('Code from the app').fill(otp.generate());
      await p.getByRole('button', { name: 'Verify and log in' }).click();
      await p.getByRole('heading', { name: 'Save your backup codes' }).waitFor();
      const codes = await p.locator('#signup-codes li').allInnerTexts();
      assert.equal(codes.length, 10);
      await p.getByRole('button', { name: 'Continue' }).click();
      await accountLoaded(p);
      await logOut(p);

      await p.goto('/login');
      await logInWithPassword(p, dave.username, dave.password);
      await p.getByRole('button', { name: 'Use a backup code' }).click();
      await p.getByLabel('Backup code').fill(codes[0] ?? '');
      await p.keyboard.press('Enter');
      await p.getByText('You used a backup code. You have 9 backup codes left.').waitFor();
      await p.getByRole('button', { name: 'Continue' }).click();
      await accountLoaded(p);
      await context.close();
    } finally {
      await strict.stop();
    }
  });

  test('no page violated its Content-Security-Policy or threw', () => {
    assert.deepEqual(cspViolations, []);
  });

  // Only `npm run screenshots` rewrites the tracked README images; a plain `npm run test:e2e` leaves the tree clean.
  if (process.env.UPDATE_SCREENSHOTS === '1') test('the README screenshots are refreshed from this run', async () => {
    const dir = join(ROOT, 'docs', 'screenshots');
    await mkdir(dir, { recursive: true });
    await copyFile(join(RESULTS_DIR, 'login-desktop.png'), join(dir, 'login.png'));
    await copyFile(join(RESULTS_DIR, 'account-desktop.png'), join(dir, 'account.png'));
  });
});
