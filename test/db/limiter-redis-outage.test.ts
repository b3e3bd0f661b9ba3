/**
 * A lock armed while Redis was down must not disappear when Redis comes back. During an outage the
 * in-process insurance counters count (afresh: they cannot know what Redis held); once Redis answered
 * again the Redis counters answered alone and the failures and locks counted meanwhile were
 * forgotten, so an account locked during the outage was open again, with the rest of its Redis
 * budget (3 failures before, 10 during, 7 more after, with a limit of 10). Now the insurance's counts
 * are added into Redis when it answers again: after the outage, one process checks no more than
 * the limit counting both stores, for the account's short window, its consecutive count and the IP.
 *
 * A redis-server of the test's own (append-only file, fsync always: it restarts with its data, as a
 * production Redis would), killed and started again on the same port. Runs with REDIS_URL (CI has
 * redis-server then); the shared server itself is not touched.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import type { Redis } from 'ioredis';
import { loadConfig, type Config } from '../../src/config.ts';
import { isAppError } from '../../src/errors.ts';
import type { AttemptSubject, Limiter } from '../../src/security/limiter.ts';
import { FlexibleLimiter, type LimiterConfig } from '../../src/security/limiter-flexible.ts';
import { createRedisClient, createRedisLimiter } from '../../src/security/limiter-redis.ts';
import { freePort } from '../helpers/net.ts';

const base = loadConfig({ NODE_ENV: 'test' });
const LIMIT = 10;

function settings(rateLimit: Partial<Config['rateLimit']>): LimiterConfig {
  // Every limit but the one under test far away, so only that one can lock.
  const far = { accountMaxFailures: 1000, accountMaxConsecutiveFailures: 1000, ipMaxFailures: 1000, accountLockSeconds: 900 };
  return { rateLimit: { ...base.rateLimit, ...far, ...rateLimit }, emailOtpCooldownSeconds: 60, emailOtpMaxPerHour: 5 };
}

/** A redis-server on `port` keeping its data in `dir` across restarts; resolves once it accepts connections. */
async function startRedis(port: number, dir: string): Promise<ChildProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always'];
  const server = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    setTimeout(() => reject(new Error('redis-server did not start within 10 s')), 10_000).unref();
    server.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
    server.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('Ready to accept connections')) resolve();
    });
  });
  return server;
}

async function stop(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGKILL');
  await exited;
}

/** Polls until the client is connected, or gives up after about 20 s (ioredis retries every ≤ 2 s). */
async function untilStatus(client: Redis, want: 'ready' | 'not ready'): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if ((client.status === 'ready') === (want === 'ready')) return;
    await sleep(50);
  }
  throw new Error(`the Redis client never became ${want} (status ${client.status})`);
}

/**
 * `n` wrong guesses at the subject, as a login makes them (count, check, fail); how many were
 * checked, the rest refused with 429 before any check.
 */
async function guesses(l: Limiter, n: number, subject: (i: number) => AttemptSubject): Promise<number> {
  let checked = 0;
  for (let i = 0; i < n; i++) {
    try {
      const attempt = await l.beginAttempt(subject(i));
      checked++;
      await attempt.failed();
    } catch (e) {
      assert.ok(isAppError(e, 'too_many_requests'), String(e));
    }
  }
  return checked;
}

interface Case {
  readonly name: string;
  readonly limiter: Limiter;
  readonly subject: (i: number) => AttemptSubject;
  readonly during: number;
  checked: number[];
}

if (process.env.REDIS_URL) {
  test('failures counted while Redis was down still count once it is back: short lock, hard lock and IP lock', async (t: TestContext) => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'twofold-redis-outage-'));
    let server = await startRedis(port, dir);
    // One client for every limiter of the process: they all see the same outage.
    const client = createRedisClient(`redis://127.0.0.1:${port}`);
    t.after(async () => {
      client.disconnect();
      await stop(server);
      rmSync(dir, { recursive: true, force: true });
    });
    const prefix = `twofold-test:${randomUUID()}`;
    const make = (rateLimit: Partial<Config['rateLimit']>, scope: string): Limiter => createRedisLimiter(settings(rateLimit), { client, keyPrefix: `${prefix}:${scope}` });
    const short = make({ accountMaxFailures: LIMIT }, 'short');
    const hard = make({ accountMaxConsecutiveFailures: LIMIT, accountHardLockSeconds: 3600 }, 'hard');
    const ip = make({ ipMaxFailures: LIMIT }, 'ip');
    assert.ok(short instanceof FlexibleLimiter);
    await short.ready();

    const cases: Case[] = [
      // The outage's guesses reach the limit (the insurance locks): none may be checked after it.
      { name: 'short window', limiter: short, subject: () => ({ account: 'alice', ip: '192.0.2.1' }), during: 12, checked: [] },
      { name: 'consecutive', limiter: hard, subject: () => ({ account: 'bob', ip: '192.0.2.2' }), during: 12, checked: [] },
      { name: 'IP', limiter: ip, subject: (i) => ({ account: `sprayed-${i}-${randomUUID()}`, ip: '192.0.2.3' }), during: 12, checked: [] },
      // The outage's guesses stay below the limit: after it, only the rest of the budget is left.
      { name: 'short window, not locked during', limiter: short, subject: () => ({ account: 'carol', ip: '192.0.2.4' }), during: 5, checked: [] },
    ];

    for (const c of cases) c.checked.push(await guesses(c.limiter, 3, c.subject));
    await stop(server);
    await untilStatus(client, 'not ready');
    for (const c of cases) c.checked.push(await guesses(c.limiter, c.during, c.subject));
    server = await startRedis(port, dir);
    await untilStatus(client, 'ready');
    for (const c of cases) c.checked.push(await guesses(c.limiter, 12, c.subject));

    for (const c of cases) {
      const [before, during, after] = c.checked as [number, number, number];
      assert.equal(before, 3, `${c.name}: all checked before the outage`);
      // The insurance starts empty (documented): the outage has a budget of its own.
      assert.equal(during, Math.min(c.during, LIMIT), `${c.name}: during the outage`);
      assert.equal(after, Math.max(0, LIMIT - before - during), `${c.name}: after the outage, the outage's failures count (checked ${c.checked.join(' + ')})`);
    }
    // The lock is in Redis, so every instance sees it, and the right password is refused too.
    const other = createRedisLimiter(settings({ accountMaxFailures: LIMIT }), { client: createRedisClient(`redis://127.0.0.1:${port}`), keyPrefix: `${prefix}:short` });
    t.after(() => other.close());
    await (other as FlexibleLimiter).ready();
    await assert.rejects(other.assertAllowed({ account: 'alice', ip: '198.51.100.9' }), (e) => isAppError(e, 'too_many_requests'));
  });
}

if (process.env.REDIS_URL) {
  /** A redis-server of the test's own, with a client and a limiter of `rateLimit` on it; all stopped when the test ends. */
  async function ownRedis(t: TestContext, rateLimit: Partial<Config['rateLimit']>) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'twofold-redis-slow-'));
    const server = { current: await startRedis(port, dir) };
    const client = createRedisClient(`redis://127.0.0.1:${port}`);
    const control = createRedisClient(`redis://127.0.0.1:${port}`);
    const prefix = `twofold-test:${randomUUID()}`;
    const limiter = createRedisLimiter(settings(rateLimit), { client, keyPrefix: prefix });
    t.after(async () => {
      client.disconnect();
      control.disconnect();
      await stop(server.current);
      rmSync(dir, { recursive: true, force: true });
    });
    await (limiter as FlexibleLimiter).ready();
    await untilStatus(control, 'ready');
    return { port, dir, server, client, control, prefix, limiter };
  }

  /** Every key under `prefix` with its value and time to live (-1: none). */
  async function keysOf(control: Redis, prefix: string): Promise<Array<{ key: string; value: string | null; pttl: number }>> {
    const keys = await control.keys(`${prefix}*`);
    return Promise.all(keys.map(async (key) => ({ key, value: await control.get(key), pttl: await control.pttl(key) })));
  }

  test('a connected but slow Redis (writes stalled past the command timeout): each failure counts once, and no account locks early', async (t) => {
    const { control, prefix, limiter } = await ownRedis(t, { accountMaxFailures: LIMIT });
    const subject = { account: 'dave', ip: '192.0.2.7' };
    // Writes wait 4 s; the client times its commands out after 1 s and the insurance answers, while
    // Redis still runs them once the pause ends.
    await control.call('CLIENT', 'PAUSE', '4000', 'WRITE');
    assert.equal(await guesses(limiter, 3, () => subject), 3);
    await control.call('CLIENT', 'UNPAUSE');
    // The stalled writes land now; then the counts must be those of three failures, not more.
    for (let i = 0; i < 3; i++) assert.equal(await guesses(limiter, 1, () => subject), 1, 'not locked after a few failures');
    await sleep(200);
    const counts = (await keysOf(control, `${prefix}:rl:account:`)).map((k) => Number(k.value));
    assert.ok(counts.length > 0 && counts.every((n) => n <= 6), `each failure counted once at most: ${counts.join(', ')}`);
  });

  test('a hand-over of an in-process lock whose time is up adds nothing, and leaves no key without an expiry', async (t) => {
    const r = await ownRedis(t, { accountMaxFailures: 3, accountLockSeconds: 20 });
    const subject = { account: 'erin', ip: '192.0.2.8' };
    await stop(r.server.current);
    await untilStatus(r.client, 'not ready');
    assert.equal(await guesses(r.limiter, 3, () => subject), 3);
    await assert.rejects(r.limiter.assertAllowed(subject), (e) => isAppError(e, 'too_many_requests'), 'locked in process during the outage');
    r.server.current = await startRedis(r.port, r.dir);
    await untilStatus(r.client, 'ready');
    await untilStatus(r.control, 'ready');
    // The wall clock steps past the lock (an NTP step, a resumed VM) before the in-process record's
    // own timer, which runs on the monotonic clock, removed it: its time left reads as nothing.
    const realNow = Date.now;
    Date.now = () => realNow() + 30_000;
    try {
      await r.limiter.assertAllowed(subject);
    } finally {
      Date.now = realNow;
    }
    const left = await keysOf(r.control, r.prefix);
    assert.deepEqual(left.filter((k) => k.pttl === -1), [], 'a key without an expiry locks for good');
    await r.limiter.assertAllowed(subject);
  });
}
