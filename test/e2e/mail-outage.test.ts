/**
 * Mail that is never lost, with the real process: the service signs a user up while SMTP is down
 * (answering at once), crashes (SIGKILL), and comes back on the same data directory after the SMTP
 * server is up again; the verification mail then arrives exactly once, and its link still works.
 *
 * This test waits on wall-clock time because a real process and a real SMTP server are involved; every
 * wait is a bounded poll.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { freePort, startSmtpSink, tokenLink, type SmtpSink } from '../helpers/smtp-sink.ts';
import { ROOT, SERVER_ARGS } from '../helpers/root.ts';

const POLL_INTERVAL_MS = 200;

/** A running service process and everything it has printed. */
interface Service {
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

function startService(env: Record<string, string>): Service {
  const child = spawn(process.execPath, [...SERVER_ARGS], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  child.stdout?.setEncoding('utf8').on('data', (s: string) => output.push(s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => output.push(s));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return { child, output, exited };
}

async function kill(service: Service): Promise<void> {
  if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGKILL');
  await service.exited;
}

/** Polls `check` every `everyMs` until it returns a value, up to `timeoutMs`; fails with `what`. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function waitHealthy(service: Service, base: string): Promise<void> {
  await waitFor(
    'the service to answer /healthz',
    async () => {
      if (service.child.exitCode !== null) throw new Error(`the service exited (${service.child.exitCode}):\n${service.output.join('')}`);
      try {
        const res = await fetch(`${base}/healthz`);
        return res.ok ? true : undefined;
      } catch {
        return undefined;
      }
    },
    // Generous: a first start creates the database and keys, and CI machines can be slow and busy.
    120_000,
  );
}

test('SMTP down, the service crashes and restarts: the sign-up mail arrives exactly once', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'twofold-outage-'));
  const httpPort = await freePort();
  const smtpPort = await freePort(); // nothing listens here until the SMTP server starts below
  const base = `http://127.0.0.1:${httpPort}`;
  // Built from scratch, not inherited: DATABASE_URL or REDIS_URL of the test run must not leak in.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? dataDir,
    NODE_ENV: 'development',
    PORT: String(httpPort),
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
    OUTBOX_POLL_INTERVAL_MS: String(POLL_INTERVAL_MS),
    OUTBOX_MAX_BACKOFF: '2',
    LOG_LEVEL: 'warn',
  };
  const services: Service[] = [];
  const sinks: SmtpSink[] = [];
  t.after(async () => {
    await Promise.all(services.map(kill));
    await Promise.all(sinks.map((s) => s.close()));
    rmSync(dataDir, { recursive: true, force: true });
  });

  // First life: SMTP is down.
  const first = startService(env);
  services.push(first);
  await waitHealthy(first, base);

  const username = `outage_${Date.now().toString(36)}`;
  const email = `${username}@example.test`;
  const signup = await fetch(`${base}/api/v1/user`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, email, password1: 'correct horse battery staple', password2: 'correct horse battery staple' }),
  });
  assert.equal(signup.status, 201, await signup.clone().text());
  // The 201 came while no SMTP server existed at all: nothing about it waited for mail.

  // The worker has tried and failed (and recorded the failure) before the crash.
  await waitFor('a failed delivery to be logged', () => (first.output.join('').includes('mail delivery failed; will retry') ? true : undefined), 15_000);

  // Crash: no graceful shutdown, nothing flushed by the application.
  await kill(first);

  // SMTP comes back on the same port, then the service on the same data directory.
  const sink = await startSmtpSink(smtpPort);
  sinks.push(sink);
  const second = startService(env);
  services.push(second);
  await waitHealthy(second, base);

  await waitFor('the verification mail to arrive', () => (sink.to(email).length > 0 ? true : undefined), 30_000);
  // A few more poll cycles: a duplicate would show up now.
  await sleep(POLL_INTERVAL_MS * 8);
  const mails = sink.to(email);
  assert.equal(mails.length, 1, `delivered ${mails.length} times`);
  assert.equal(new Set(sink.received.map((r) => r.mail.messageId)).size, sink.received.length, 'no Message-ID twice');
  assert.equal(mails[0]!.mail.subject, 'Confirm your e-mail address for Twofold');

  // The link survived the crash with everything else. Opening it never spends it (link scanners);
  // the token is spent by the POST its confirmation page sends.
  const link = tokenLink(mails[0]!.mail.text);
  const verified = await fetch(`${base}/api/v1/user/email/verify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: link.searchParams.get('token') }),
  });
  assert.equal(verified.status, 200);
  assert.deepEqual(await verified.json(), { email_verified: true });
});
