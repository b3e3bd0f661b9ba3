/**
 * The session checks of simultaneous authenticated requests are batched into shared statements
 * (src/db/repositories/session-reads.ts). Batching must never hand one caller another caller's row,
 * must still refuse a revoked or expired session at once, and must not let one bad id fail the rest.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import type { Database } from '../../src/db/database.ts';
import { readLiveSessionUser, readUserInfoForSession } from '../../src/db/repositories/session-reads.ts';
import { bearer, createUser, describeWithApp, loginTokens, quietLogger, type TestUser } from '../helpers/app.ts';

/** The database, counting the batched session-check statements sent through it. */
function counting(db: Database): { db: Database; checks: () => number } {
  let checks = 0;
  const wrapped: Database = {
    kind: db.kind,
    query: (sql, params) => {
      if (sql.includes('s.id = ANY($1::uuid[])')) checks += 1;
      return db.query(sql, params);
    },
    transaction: (fn) => db.transaction(fn),
    exec: (sql) => db.exec(sql),
    ping: () => db.ping(),
    close: () => db.close(),
  };
  return { db: wrapped, checks: () => checks };
}

describeWithApp('batched session checks', (suite) => {
  test('simultaneous requests of many users over HTTP: each gets its own profile, revoked sessions are refused', async (t) => {
    const { app } = await suite.build(t);
    const users: TestUser[] = [];
    for (let i = 0; i < 30; i++) users.push(await createUser(app));
    const tokens = await Promise.all(users.map((u) => loginTokens(app, u)));
    // Every third user logs out: their access tokens are still signed and unexpired.
    const revoked = new Set<number>();
    for (let i = 0; i < users.length; i += 3) {
      assert.equal((await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(tokens[i]!.access_token) })).statusCode, 204);
      revoked.add(i);
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    // Each user asks for its profile (the user-info read) and its sessions (the generic check) at once, three times.
    const answers = await Promise.all(users.flatMap((_u, i) => [0, 1, 2].flatMap(() => [
      fetch(`${base}/api/v1/auth-jwt/user-info`, { headers: bearer(tokens[i]!.access_token) }).then(async (r) => ({ i, kind: 'info', status: r.status, body: await r.json() as unknown })),
      fetch(`${base}/api/v1/auth-jwt/sessions`, { headers: bearer(tokens[i]!.access_token) }).then(async (r) => ({ i, kind: 'sessions', status: r.status, body: await r.json() as unknown })),
    ])));
    assert.equal(answers.length, 180);
    for (const a of answers) {
      const user = users[a.i]!;
      if (revoked.has(a.i)) {
        assert.equal(a.status, 401, `${a.kind} of a logged-out session`);
        assert.equal((a.body as { code: string }).code, 'invalid_token');
        continue;
      }
      assert.equal(a.status, 200, `${a.kind} of a live session`);
      if (a.kind === 'info') {
        const info = a.body as { uuid: string; username: string; email: string };
        assert.equal(info.uuid, user.uuid);
        assert.equal(info.username, user.username);
        assert.equal(info.email, user.email);
      } else {
        const listed = a.body as Array<{ id: string }>;
        assert.deepEqual(listed.map((s) => s.id), [decodeJwt(tokens[a.i]!.access_token).sid]);
      }
    }
  });

  test('the checks of simultaneous requests share statements, and a revocation between two bursts is seen by the second', async (t) => {
    const { db, checks } = counting(suite.db());
    const { app } = await suite.build(t, { db });
    const users: TestUser[] = [];
    for (let i = 0; i < 12; i++) users.push(await createUser(app));
    const tokens = await Promise.all(users.map((u) => loginTokens(app, u)));
    const burst = () => Promise.all(tokens.flatMap((tk) => [
      app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(tk.access_token) }),
      app.inject({ method: 'GET', url: '/api/v1/auth-jwt/sessions', headers: bearer(tk.access_token) }),
    ]));
    // The first use of a token verifies its signature; later uses hit the verified-token cache, so
    // the burst's requests reach their session checks in the same turn of the event loop.
    await burst();
    const before = checks();
    const first = await burst();
    assert.ok(first.every((r) => r.statusCode === 200));
    const used = checks() - before;
    assert.ok(used >= 1 && used <= 4, `24 session checks took ${used} statements`);

    assert.equal((await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(tokens[5]!.access_token) })).statusCode, 204);
    const second = await burst();
    second.forEach((r, k) => assert.equal(r.statusCode, Math.floor(k / 2) === 5 ? 401 : 200, `request ${k}`));
  });

  test('an id that is not a UUID finds nothing and does not fail the batch it joined; expiry is the caller\'s clock', async (t) => {
    const { app, clock, deps } = await suite.build(t);
    const user = await createUser(app);
    const sid = decodeJwt((await loginTokens(app, user)).access_token).sid as string;
    const db = deps.db;
    const now = clock();
    const [bad, live, info, upper] = await Promise.all([
      readLiveSessionUser(db, "x' OR 1=1 --", now),
      readLiveSessionUser(db, sid, now),
      readUserInfoForSession(db, sid, now),
      readLiveSessionUser(db, sid.toUpperCase(), now),
    ]);
    assert.equal(bad, undefined);
    assert.equal(live?.user_id, user.uuid);
    assert.equal(info?.username, user.username);
    assert.equal(upper?.user_id, user.uuid);
    const expiry = (await deps.db.query<{ expires_at: Date }>('SELECT expires_at FROM sessions WHERE id = $1', [sid])).rows[0]!.expires_at;
    const [atExpiry, justBefore] = await Promise.all([
      readLiveSessionUser(db, sid, expiry),
      readLiveSessionUser(db, sid, new Date(expiry.getTime() - 1)),
    ]);
    assert.equal(atExpiry, undefined, 'a session is over at its expiry');
    assert.equal(justBefore?.user_id, user.uuid);
  });

  test('250 simultaneous lookups go out as batches of at most 100, each caller gets its own row', async (t) => {
    const { app, clock } = await suite.build(t);
    const { db, checks } = counting(suite.db());
    const users: TestUser[] = [];
    for (let i = 0; i < 5; i++) users.push(await createUser(app));
    const sids = await Promise.all(users.map(async (u) => decodeJwt((await loginTokens(app, u)).access_token).sid as string));
    const now = clock();
    const rows = await Promise.all(Array.from({ length: 250 }, (_v, k) => readLiveSessionUser(db, sids[k % 5]!, now)));
    rows.forEach((row, k) => assert.equal(row?.user_id, users[k % 5]!.uuid, `lookup ${k}`));
    assert.equal(checks(), 3);
  });

  test('a database failure during a batch answers each of its requests with a problem, and the next batch works', async (t) => {
    let failNext = false;
    const real = suite.db();
    const db: Database = { ...counting(real).db, query: (sql, params) => {
      if (failNext && sql.includes('s.id = ANY($1::uuid[])')) {
        failNext = false;
        return Promise.reject(new Error('connection lost (test)'));
      }
      return real.query(sql, params);
    } };
    const { app } = await suite.build(t, { db, logger: quietLogger() });
    const users: TestUser[] = [];
    for (let i = 0; i < 5; i++) users.push(await createUser(app));
    const tokens = await Promise.all(users.map((u) => loginTokens(app, u)));
    const burst = () => Promise.all(tokens.flatMap((tk) => [0, 1].map(() => app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(tk.access_token) }))));
    await burst();
    failNext = true;
    const failed = await burst();
    assert.equal(failNext, false, 'the failing statement ran');
    const statuses = failed.map((r) => r.statusCode);
    assert.ok(statuses.some((s) => s === 500), statuses.join(','));
    for (const r of failed) {
      if (r.statusCode === 200) continue;
      assert.equal(r.statusCode, 500);
      assert.equal(r.headers['content-type'], 'application/problem+json; charset=utf-8');
      assert.equal(r.json().code, 'internal_error');
      assert.doesNotMatch(r.body, /connection lost|ANY|SELECT/);
    }
    const after = await burst();
    assert.ok(after.every((r) => r.statusCode === 200), 'the next burst is answered');
  });
});
