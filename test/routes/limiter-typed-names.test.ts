/**
 * What someone types as a login name, known or not (sometimes a password typed into the wrong
 * field), is never kept as typed: a passwordless sign-in's challenge row holds a keyed digest of it,
 * and the limiter is handed that digest, not the name (its store keys were SHA-256 digests of what it
 * was handed already, but unkeyed: a copy of Redis let anyone test a guess against them). Counting still goes by the name:
 * failures for one name lock that name whatever its case or the spaces around it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { createLimiter } from '../../src/security/create-limiter.ts';
import type { Limiter } from '../../src/security/limiter.ts';
import { buildTestApp, createUser, type TestApp } from '../helpers/app.ts';
import { withDatabases } from '../helpers/pg-database.ts';

const ENV = { LOCKOUT_MAX_FAILURES: '3' };
const TYPED_SECRET = 'My Secret Passw0rd Typed Here';

/** A limiter that writes down every argument it is given (as JSON) before passing the call on. */
function recording(inner: Limiter): { limiter: Limiter; seen: string[] } {
  const seen: string[] = [];
  const limiter = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        seen.push(JSON.stringify(args));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { limiter, seen };
}

async function passwordLogin(ta: TestApp, username: string): Promise<number> {
  const r = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username, password: 'not the password at all' } });
  return r.statusCode;
}

/** Fails logins with the typed secret, one per failure allowed, and expects the next to be refused. */
async function lockTypedName(ta: TestApp): Promise<void> {
  for (let i = 0; i < 3; i++) assert.equal(await passwordLogin(ta, TYPED_SECRET), 401);
  // Another case and spaces around it: the same name, so the same (locked) count.
  assert.equal(await passwordLogin(ta, `  ${TYPED_SECRET.toUpperCase()} `), 429);
}

withDatabases('typed login names are kept as digests', ({ open }) => {
  test('neither the limiter nor the passkey challenge is handed a name as typed; the name still locks', async (t) => {
    const d = await open();
    const config = loadConfig({ NODE_ENV: 'test', ...ENV });
    const { limiter, seen } = recording(createLimiter(config));
    t.after(() => limiter.close());
    const ta = await buildTestApp(t, d.db, { env: ENV, limiter });
    const user = await createUser(ta.app);

    await lockTypedName(ta);
    // A real account's names, typed: a failure by username and one by e-mail address.
    assert.equal(await passwordLogin(ta, user.username.toUpperCase()), 401);
    assert.equal(await passwordLogin(ta, user.email), 401);
    // The passwordless options store the typed name with their challenge (for the decoy's count).
    const r = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/passkey/options', payload: { username: TYPED_SECRET } });
    assert.equal(r.statusCode, 200, r.body);

    const everything = seen.join('\n').toLowerCase();
    assert.ok(seen.length > 0);
    for (const name of [TYPED_SECRET, user.username, user.email]) {
      assert.ok(!everything.includes(name.toLowerCase()), `the limiter was handed ${name} as typed`);
    }
    const rows = (await ta.deps.db.query<{ login_name: string | null }>("SELECT login_name FROM webauthn_challenges WHERE purpose = 'login'")).rows;
    assert.equal(rows.length, 1);
    assert.ok(rows[0]!.login_name, 'the challenge keeps the name (as a digest) for the decoy count');
    assert.ok(!rows[0]!.login_name!.toLowerCase().includes(TYPED_SECRET.toLowerCase()), 'the challenge stores the typed name as typed');
  });
});
