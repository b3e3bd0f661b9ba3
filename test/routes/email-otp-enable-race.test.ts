/**
 * E-mailed codes under concurrency. A new code for turning them on restarts a used-up attempt count
 * (storeAndMailCode's restartAt); that is safe only if no mailed code is ever compared more than
 * EMAIL_OTP_MAX_ATTEMPTS times, however guesses and new-code requests interleave. Every response to a
 * wrong guess reads the same (401 invalid_security_code, for "wrong" and for "tried too often"), so
 * the comparisons are counted where they happen: the guarded increment that hands a guess the stored
 * digest (reserveEmailOtpAttempt's RETURNING). Also: the right code is spent once by dozens of
 * simultaneous confirmations, the sending limits hold against simultaneous requests, and a login
 * code (whose count is never restarted) sees at most 5 comparisons per challenge.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { loadConfig } from '../../src/config.ts';
import type { Database, Queryable, QueryResult } from '../../src/db/database.ts';
import { findEmailOtp, isEmailOtpEnabled } from '../../src/db/repositories/email-otps.ts';
import { emailCodeHash } from '../../src/services/second-factors.ts';
import { auditTypesOf } from '../helpers/admin.ts';
import { createUser, describeWithApp, loginTokens, type AppSuite, type TestApp, type TestAppOptions, type TestUser } from '../helpers/app.ts';
import { codeOf, enableEmailOtp, lastCode, loginMfa, mailsOf, mfaChallenge, post, requestLoginCode, verifyEmail } from '../helpers/factors.ts';
import { redisLimiters } from '../helpers/two-instances.ts';

const ENABLE = '/api/v1/auth-email-otp/enable';
const CONFIRM = '/api/v1/auth-email-otp/confirm';
const MAX_ATTEMPTS = 5;

/** Which stored digest each guess was compared with, in the order the database handed them out. */
interface Comparison {
  purpose: string;
  digest: string;
}

/** One turn of the event loop. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * `db` with every attempt taken at an e-mailed code recorded in `seen` (its purpose, and the digest
 * the guess is then compared with). Each transaction, and each statement on email_otps before and
 * after it runs, waits a turn of the event loop, as on a busier server: on PGlite (one connection,
 * statements in arrival order) the requests' statements then interleave as they do on a pool,
 * instead of each request's few statements running back to back.
 */
function watchAttempts(db: Database, seen: Comparison[]): Database {
  // Statements in a transaction are watched too: an attempt taken there must be counted all the same.
  const watched = (q: Queryable) => async <T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>> => {
    const busy = sql.includes('email_otps');
    if (busy) await turn();
    const r = await q.query<T>(sql, params);
    if (busy) await turn();
    if (/^\s*UPDATE email_otps SET attempts = attempts \+ 1/.test(sql)) {
      for (const row of r.rows as Array<{ code_hash: string }>) seen.push({ purpose: String(params?.[1]), digest: row.code_hash });
    }
    return r;
  };
  return {
    kind: db.kind,
    query: watched(db),
    async transaction(fn) {
      await turn();
      return db.transaction((tx) => fn({ query: watched(tx) }));
    },
    exec: (sql) => db.exec(sql),
    ping: () => db.ping(),
    close: () => db.close(),
  };
}

function countsByDigest(seen: readonly Comparison[], purpose: (p: string) => boolean): Map<string, number> {
  const counts = new Map<string, number>();
  for (const c of seen) if (purpose(c.purpose)) counts.set(c.digest, (counts.get(c.digest) ?? 0) + 1);
  return counts;
}

/** Runs `f` after `ms` milliseconds: spreads requests over the others' work instead of all first. */
function later<T>(ms: number, f: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => setTimeout(() => f().then(resolve, reject), ms));
}

function outcome(res: LightMyRequestResponse): string {
  return res.statusCode < 300 ? String(res.statusCode) : `${res.statusCode} ${res.json().code}`;
}

function tally(responses: readonly LightMyRequestResponse[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of responses) out[outcome(r)] = (out[outcome(r)] ?? 0) + 1;
  return out;
}

/**
 * Sends every guess to /confirm, 16 in flight at any time, while two askers each ask for `newCodes`
 * new codes one after another, the next once 3 more guesses were answered: codes are replaced before
 * their count is used up (it carries over) and after (it restarts), with guesses in flight either way.
 */
async function guessWhileAskingForCodes(app: TestApp, token: string, guesses: readonly string[], newCodes: number): Promise<{ confirms: LightMyRequestResponse[]; sent: LightMyRequestResponse[] }> {
  const confirms: LightMyRequestResponse[] = [];
  let next = 0;
  const waiting = new Set<() => void>();
  const guesser = async (): Promise<void> => {
    while (next < guesses.length) {
      confirms.push(await post(app, CONFIRM, token, { code: guesses[next++] }));
      for (const wake of waiting) wake();
    }
  };
  const sent: LightMyRequestResponse[] = [];
  const asker = async (): Promise<void> => {
    for (let i = 0; i < newCodes; i++) {
      sent.push(await post(app, ENABLE, token));
      // Every guess is answered in the end, so this wait is bounded by the guesses themselves.
      const target = Math.min(confirms.length + 3, guesses.length);
      while (confirms.length < target) {
        await new Promise<void>((resolve) => {
          const wake = (): void => {
            waiting.delete(wake);
            resolve();
          };
          waiting.add(wake);
        });
      }
    }
  };
  await Promise.all([asker(), asker(), ...Array.from({ length: 16 }, guesser)]);
  return { confirms, sent };
}

/** A logged-in user with a verified address, on an app whose database records the attempts in `seen`. */
async function setUp(suite: AppSuite, t: TestContext, options: TestAppOptions): Promise<{ app: TestApp; user: TestUser; token: string; seen: Comparison[] }> {
  const seen: Comparison[] = [];
  const app = await suite.build(t, { ...options, db: watchAttempts(suite.db(), seen) });
  const user = await createUser(app.app);
  const token = (await loginTokens(app.app, user)).access_token;
  await verifyEmail(app, user);
  return { app, user, token, seen };
}

describeWithApp('E-mailed code attempts under concurrency', (suite) => {
  test('wrong guesses and new codes at once: no mailed code is compared more than 5 times; its right code after them is refused', async (t) => {
    const { app, user, token, seen } = await setUp(suite, t, { env: { EMAIL_OTP_COOLDOWN: '0', EMAIL_OTP_MAX_PER_HOUR: '1000' } });
    const isEnable = (p: string): boolean => p === 'enable';
    const digestOf = (code: string): string => emailCodeHash(app.deps, user.uuid, 'enable', code);

    /** The invariant: every comparison is against a mailed code, and none took more than 5. */
    const comparedAtMost = (mailed: readonly string[], when: string): void => {
      const mailedDigests = new Set(mailed.map(digestOf));
      for (const [digest, n] of countsByDigest(seen, isEnable)) {
        assert.ok(mailedDigests.has(digest), `${when}: a comparison against no mailed code`);
        assert.ok(n <= MAX_ATTEMPTS, `${when}: a mailed code was compared ${n} times`);
      }
    };

    for (let round = 0; round < 3; round++) {
      // Well-formed guesses. A mailed code equal to one of them (about 1 in 10^5 per run) is reported
      // below as such, not as a defect.
      const guesses = Array.from({ length: 36 }, (_g, i) => String(900_000 + round * 1000 + i));
      const mailedBefore = (await mailsOf(app, 'email_otp_enable', user.email)).length;
      // The last code is used up (none yet in round 0): the round's first new code restarts the count.
      assert.equal((await post(app, ENABLE, token)).statusCode, 202);
      const before = seen.length;
      const { confirms, sent } = await guessWhileAskingForCodes(app, token, guesses, 3);
      const inRound = seen.slice(before);
      t.diagnostic(`round ${round}: ${inRound.length} comparisons over ${new Set(inRound.map((c) => c.digest)).size} of ${sent.length + 1} new codes`);
      const mailed = (await mailsOf(app, 'email_otp_enable', user.email)).map(codeOf);
      assert.deepEqual(mailed.filter((c) => guesses.includes(c)), [], 'a mailed code happened to equal a guess: rerun');
      comparedAtMost(mailed, `round ${round}`);
      assert.deepEqual(tally(confirms), { '401 invalid_security_code': guesses.length }, `round ${round}: every guess refused`);
      assert.deepEqual(tally(sent), { 202: sent.length }, `round ${round}: every new code sent`);
      // A guess is refused only at a count of 5, so the round's codes took 5 guesses or more in all,
      // the restarted count included, and no guess reached a code of an earlier round.
      const mailedInRound = new Set(mailed.slice(mailedBefore).map(digestOf));
      assert.ok(inRound.length >= MAX_ATTEMPTS, `round ${round}: ${inRound.length} comparisons`);
      assert.ok(inRound.every((c) => mailedInRound.has(c.digest)), `round ${round}: a guess reached an earlier round's code`);

      // Use up whatever the last code has left, then bring its right code: refused, never compared.
      for (let i = 0; i < MAX_ATTEMPTS; i++) assert.equal((await post(app, CONFIRM, token, { code: String(800_000 + i) })).statusCode, 401);
      const row = await findEmailOtp(app.deps.db, user.uuid, 'enable');
      assert.equal(row?.attempts, MAX_ATTEMPTS, `round ${round}: the live code is used up`);
      const current = mailed.find((c) => digestOf(c) === row.code_hash);
      assert.ok(current !== undefined, 'the stored digest is that of a mailed code');
      const comparedBefore = seen.length;
      const late = await post(app, CONFIRM, token, { code: current });
      assert.equal(outcome(late), '401 invalid_security_code', `round ${round}: the right code after 5 wrong tries`);
      assert.equal(seen.length, comparedBefore, 'the right code after the limit is not even compared');
      comparedAtMost(mailed, `round ${round}, used up`);
      assert.equal(await isEmailOtpEnabled(app.deps.db, user.uuid), false);
    }

    // A fresh code, confirmed by 30 requests at once: spent exactly once.
    assert.equal((await post(app, ENABLE, token)).statusCode, 202);
    const code = await lastCode(app, 'email_otp_enable', user.email);
    const confirms = await Promise.all(Array.from({ length: 30 }, (_c, i) => later(i % 4, () => post(app, CONFIRM, token, { code }))));
    const won = confirms.filter((r) => r.statusCode === 200);
    assert.equal(won.length, 1, JSON.stringify(tally(confirms)));
    for (const r of confirms.filter((c) => c !== won[0])) assert.ok(['401 invalid_security_code', '409 email_otp_already_enabled'].includes(outcome(r)), outcome(r));
    assert.equal(won[0]!.json().backup_codes.length, 10);
    assert.ok((countsByDigest(seen, isEnable).get(digestOf(code)) ?? 0) <= MAX_ATTEMPTS);
    assert.equal(await isEmailOtpEnabled(app.deps.db, user.uuid), true);
    assert.equal((await mailsOf(app, 'factor_added', user.email)).length, 1);
    assert.equal((await auditTypesOf(app, user.uuid)).filter((type) => type === 'mfa.enabled').length, 1);
  });

  /** 30 simultaneous requests for a code: as many are sent (202, one mail each) as the limits allow. */
  async function burstOfEnables(t: TestContext, options: TestAppOptions, allowed: number): Promise<void> {
    const { app, user, token } = await setUp(suite, t, options);
    const sends = await Promise.all(Array.from({ length: 30 }, (_s, i) => later(i % 3, () => post(app, ENABLE, token))));
    assert.deepEqual(tally(sends), { 202: allowed, '429 too_many_requests': 30 - allowed });
    for (const r of sends.filter((s) => s.statusCode === 429)) assert.ok(Number(r.headers['retry-after']) >= 1);
    assert.equal((await mailsOf(app, 'email_otp_enable', user.email)).length, allowed);
  }

  test('simultaneous requests for a code do not beat the cooldown: one is sent', async (t) => {
    await burstOfEnables(t, {}, 1);
  });

  test('simultaneous requests for a code do not beat the hourly cap (no cooldown, cap 3)', async (t) => {
    await burstOfEnables(t, { env: { EMAIL_OTP_COOLDOWN: '0', EMAIL_OTP_MAX_PER_HOUR: '3' } }, 3);
  });

  // Counters shared through Redis, when a server is configured (the in-process limiter otherwise).
  if (process.env.REDIS_URL) {
    test('with the Redis limiter, simultaneous requests beat neither the cooldown nor the hourly cap', async (t) => {
      for (const [env, allowed] of [[{}, 1], [{ EMAIL_OTP_COOLDOWN: '0', EMAIL_OTP_MAX_PER_HOUR: '3' }, 3]] as const) {
        const limiters = await redisLimiters(loadConfig({ NODE_ENV: 'test', ...env }));
        t.after(() => Promise.all(limiters.map((l) => l.close())));
        await burstOfEnables(t, { env, limiter: limiters[0] }, allowed);
      }
    });
  }

  test('a login code: wrong guesses and resends at once compare at most 5 times in all; its right code is then refused; the right code at once logs in once', async (t) => {
    const env = { EMAIL_OTP_COOLDOWN: '0', EMAIL_OTP_MAX_PER_HOUR: '1000', LOCKOUT_MAX_FAILURES: '100', RATE_LIMIT_IP_MAX_FAILURES: '1000' };
    const { app, user, token, seen } = await setUp(suite, t, { env });
    await enableEmailOtp(app, user, token);

    const { mfa_token } = await mfaChallenge(app, user);
    assert.equal((await requestLoginCode(app, mfa_token)).statusCode, 202);
    const guesses = Array.from({ length: 30 }, (_g, i) => String(700_000 + i));
    const burst = await Promise.all([
      ...guesses.map((code, i) => later(i % 6, () => loginMfa(app, mfa_token, 'email', code))),
      ...Array.from({ length: 4 }, (_n, i) => later(i, () => requestLoginCode(app, mfa_token))),
    ]);
    const mailed = (await mailsOf(app, 'email_otp_login', user.email)).map(codeOf);
    assert.deepEqual(mailed.filter((c) => guesses.includes(c)), [], 'a mailed code happened to equal a guess: rerun');
    for (const r of burst.slice(0, guesses.length)) assert.ok(['401 invalid_security_code', '401 invalid_token'].includes(outcome(r)), outcome(r));
    // Resends racing the guesses may find the challenge already over-tried.
    for (const r of burst.slice(guesses.length)) assert.ok(['202', '401 invalid_token'].includes(outcome(r)), outcome(r));
    const compared = seen.filter((c) => c.purpose.startsWith('login:'));
    // Exactly: thirty wrong guesses use up the challenge's five, and none is compared beyond them.
    assert.equal(compared.length, MAX_ATTEMPTS, `${compared.length} comparisons for one challenge`);
    const late = await loginMfa(app, mfa_token, 'email', mailed.at(-1)!);
    assert.equal(outcome(late), '401 invalid_token', 'the challenge is over-tried');

    const fresh = await mfaChallenge(app, user);
    assert.equal((await requestLoginCode(app, fresh.mfa_token)).statusCode, 202);
    const code = await lastCode(app, 'email_otp_login', user.email);
    const logins = await Promise.all(Array.from({ length: 30 }, (_l, i) => later(i % 4, () => loginMfa(app, fresh.mfa_token, 'email', code))));
    assert.equal(logins.filter((r) => r.statusCode === 200).length, 1, JSON.stringify(tally(logins)));
    for (const r of logins.filter((l) => l.statusCode !== 200)) assert.ok(['401 invalid_security_code', '401 invalid_token'].includes(outcome(r)), outcome(r));
  });
});
