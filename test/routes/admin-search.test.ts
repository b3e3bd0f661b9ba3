import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { newId } from '../../src/crypto/random.ts';
import { insertUser } from '../../src/db/repositories/users.ts';
import { describeWithApp, type TestApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';

/** Inserts a user row directly (sign-up's hashing is not what these tests are about). */
async function insertRaw(ta: TestApp, username: string, email: string): Promise<string> {
  const id = newId();
  await insertUser(ta.deps.db, { id, username, email, full_name: null, profile: {}, password_hash: 'x', signup_mfa: null, created_at: ta.clock() });
  return id;
}

/** Walks every page of a search; returns the usernames in order and the number of pages. */
async function walk(ta: TestApp, query: string, limit: number, between?: (page: number) => Promise<void>): Promise<{ names: string[]; pages: number }> {
  const names: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const url: string = `/api/v1/admin/users?query=${encodeURIComponent(query)}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`;
    const res = await adminCall(ta, 'GET', url);
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json();
    assert.ok(body.users.length <= limit);
    names.push(...body.users.map((u: { username: string }) => u.username));
    cursor = body.next_cursor;
    pages += 1;
    if (between) await between(pages);
  } while (cursor);
  return { names, pages };
}

describeWithApp('admin user search', (suite) => {
  test('prefix of username or e-mail, case-insensitive; usernames first, then e-mail-only matches; every match once', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const tag = `q${randomBytes(3).toString('hex')}`;
    await insertRaw(ta, `${tag}_Bob`, `bob.${tag}@example.com`);
    await insertRaw(ta, `${tag}_alice`, `alice.${tag}@example.com`);
    await insertRaw(ta, `zz_${tag}`, `${tag.toUpperCase()}.carol@example.com`);
    await insertRaw(ta, `yy_${tag}`, `dave@example.com`);
    const { names } = await walk(ta, tag.toUpperCase(), 1);
    assert.deepEqual(names, [`${tag}_alice`, `${tag}_Bob`, `zz_${tag}`]);
    const byMail = await walk(ta, `alice.${tag}@`, 10);
    assert.deepEqual(byMail.names, [`${tag}_alice`]);
    // LIKE metacharacters are plain characters in a query.
    assert.deepEqual((await walk(ta, `${tag}%`, 10)).names, []);
    assert.deepEqual((await walk(ta, `${tag.slice(0, 3)}_`, 10)).names.filter((n) => n.includes(tag)), []);
    const one = (await adminCall(ta, 'GET', `/api/v1/admin/users?query=${tag}_alice`)).json();
    assert.equal(one.users.length, 1);
    const u = one.users[0];
    assert.deepEqual(Object.keys(u).sort(), ['created_at', 'email', 'email_verified', 'full_name', 'is_active', 'last_login_at', 'locked_until', 'mfa', 'roles', 'updated_at', 'username', 'uuid']);
    assert.equal(one.next_cursor, null);
  });

  test('bad limit or cursor is 422 validation_failed, never a 500', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    for (const qs of ['limit=0', 'limit=101', 'limit=abc', 'limit=-1', 'cursor=garbage', `cursor=${Buffer.from('{"p":"u","k":"a","i":"nope"}').toString('base64url')}`, `cursor=${Buffer.from('{"p":"x","k":"a","i":"00000000-0000-4000-8000-000000000000"}').toString('base64url')}`,
      // Shapes the old checks let through to the query (500): 36 dashes for a uuid, a NUL in the key.
      `cursor=${Buffer.from(JSON.stringify({ p: 'u', k: 'a', i: '-'.repeat(36) })).toString('base64url')}`,
      `cursor=${Buffer.from(JSON.stringify({ p: 'u', k: 'a\u0000b', i: '00000000-0000-4000-8000-000000000000' })).toString('base64url')}`]) {
      const res = await adminCall(ta, 'GET', `/api/v1/admin/users?${qs}`);
      assert.equal(res.statusCode, 422, qs);
      assert.equal(res.json().code, 'validation_failed');
    }
  });

  test('pagination has no gaps or repeats while users are created and deleted concurrently', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const tag = `p${randomBytes(3).toString('hex')}`;
    const initial: string[] = [];
    for (let i = 0; i < 30; i++) {
      const name = `${tag}_${String(i).padStart(3, '0')}`;
      await insertRaw(ta, name, `${name}@example.com`);
      initial.push(name);
    }
    const inserted: string[] = [];
    let n = 0;
    // Between pages, 8 users are created at once, some sorting before the cursor and some after it.
    const { names, pages } = await walk(ta, tag, 5, async () => {
      const batch = Array.from({ length: 8 }, () => {
        n += 1;
        return `${tag}_${n % 2 ? 'a' : 'z'}${String(n).padStart(3, '0')}`;
      });
      await Promise.all(batch.map((name) => insertRaw(ta, name, `${name}@example.com`)));
      inserted.push(...batch);
    });
    assert.ok(pages > 5);
    assert.equal(new Set(names).size, names.length, 'no user twice');
    for (const name of initial) assert.ok(names.includes(name), `${name} missing`);
    const sorted = [...names].sort((a, b) => (a.toLowerCase() < b.toLowerCase() ? -1 : 1));
    assert.deepEqual(names, sorted, 'keyset order');
    // Users created after the cursor passed their place are not seen; those ahead of it are.
    assert.ok(names.some((x) => inserted.includes(x)));
  });
});
