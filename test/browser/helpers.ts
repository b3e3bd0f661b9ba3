/**
 * Helpers of the browser tests: the real service as a child process, the development mailbox,
 * headless Debian Chromium through playwright-core, QR and TOTP decoding, screenshots.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import jsQRModule from 'jsqr';
import { PNG } from 'pngjs';
import * as OTPAuth from 'otpauth';
import { freePort } from '../helpers/net.ts';
import type { DevMailboxEntry } from '../../src/http/routes/dev-mailbox.ts';

// jsqr is CommonJS with an ES-style default export: TypeScript sees the module object, the runtime may
// hand over the function itself. Accept both.
type JsQR = typeof jsQRModule.default;
const jsQR: JsQR = typeof jsQRModule === 'function' ? (jsQRModule as unknown as JsQR) : jsQRModule.default;

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where screenshots and the service log of a run go (ignored by git). */
export const RESULTS_DIR = join(ROOT, 'test-results');

export { freePort };

/** A running Twofold process. */
export interface Service {
  baseUrl: string;
  stop(): Promise<void>;
}

/**
 * Starts `node --import tsx src/server.ts` on a free port with a fresh data directory, and waits until
 * `/healthz` answers. Its output goes to `test-results/<logName>`.
 */
export async function startService(extraEnv: Record<string, string> = {}, logName = 'service.log'): Promise<Service> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const port = await freePort();
  const dataDir = await mkdtemp(join(tmpdir(), 'twofold-browser-'));
  const env: Record<string, string | undefined> = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    NODE_ENV: 'development',
    ...extraEnv,
  };
  // The run must use its own embedded database and the development mailbox, whatever the shell has.
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'SMTP_URL', 'PUBLIC_URL', 'RATE_LIMIT_DISABLED', 'REQUIRE_EMAIL_VERIFICATION', 'MFA_POLICY']) {
    if (!(name in extraEnv)) delete env[name];
  }
  // The address the browser uses, unless a test asks otherwise (PUBLIC_URL: '' for the localhost default).
  env.PUBLIC_URL = extraEnv.PUBLIC_URL ?? `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(join(RESULTS_DIR, logName));
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the service exited with ${child.exitCode}; see test-results/${logName}`);
    try {
      const res = await fetch(`${baseUrl}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the service did not answer /healthz within 90 s; see test-results/${logName}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }

  return {
    baseUrl,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      log.end();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** One mail of the development mailbox. */
export type Mail = DevMailboxEntry;

/** The development mailbox, newest first. */
export async function mailbox(baseUrl: string): Promise<Mail[]> {
  const res = await fetch(`${baseUrl}/dev/mailbox.json`);
  if (!res.ok) throw new Error(`GET /dev/mailbox.json answered ${res.status}`);
  return (await res.json()) as Mail[];
}

/** The ids of the mails there now, to wait for a new one afterwards. */
export async function mailIds(baseUrl: string): Promise<Set<string>> {
  return new Set((await mailbox(baseUrl)).map((m) => m.id));
}

/** Waits for a mail not in `seen` that matches `predicate`. */
export async function waitForMail(baseUrl: string, seen: Set<string>, predicate: (m: Mail) => boolean, timeoutMs = 15_000): Promise<Mail> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await mailbox(baseUrl)).find((m) => !seen.has(m.id) && predicate(m));
    if (found) return found;
    if (Date.now() > deadline) throw new Error('no matching mail arrived in the development mailbox');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The first http(s) link of a mail's text containing `part`. */
export function linkIn(mail: Mail, part: string): string {
  const links = `${mail.text}\n${mail.html}`.match(/https?:\/\/[^\s<>"']+/g) ?? [];
  const link = links.map((l) => l.replace(/&amp;/g, '&')).find((l) => l.includes(part));
  if (!link) throw new Error(`no link containing ${part} in the mail "${mail.subject}"`);
  return link;
}

/** Launches Debian's Chromium headless (no browser download). */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Decodes the QR code of a `data:image/png;base64,...` URL and returns its text. */
export function decodeQrDataUrl(dataUrl: string): string {
  const m = /^data:image\/png;base64,(.+)$/.exec(dataUrl);
  if (!m?.[1]) throw new Error(`not a PNG data URL: ${dataUrl.slice(0, 40)}`);
  const png = PNG.sync.read(Buffer.from(m[1], 'base64'));
  const qr = jsQR(new Uint8ClampedArray(png.data.buffer, png.data.byteOffset, png.data.length), png.width, png.height);
  if (!qr) throw new Error('no QR code found in the image');
  return qr.data;
}

/** The TOTP generator of an `otpauth://totp/...` URI. */
export function totpFromUri(uri: string): OTPAuth.TOTP {
  const otp = OTPAuth.URI.parse(uri);
  if (!(otp instanceof OTPAuth.TOTP)) throw new Error('not a TOTP URI');
  return otp;
}

/** Saves a full-page screenshot as `test-results/<name>.png` and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  const path = join(RESULTS_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Viewports used for screenshots. */
export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 860 };
