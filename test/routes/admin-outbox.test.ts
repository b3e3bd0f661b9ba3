import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { recordSecurityEvent, SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import { pruneAuditLog } from '../../src/services/audit/retention.ts';
import { createUser, describeWithApp, quietLogger } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall, createAdmin } from '../helpers/admin.ts';
import { latestToken } from '../helpers/mail-links.ts';

describeWithApp('admin mail status and audit retention', (suite) => {
  test('GET /admin/outbox: queued, retrying, delivered, failed — with the last error, never a body or an address', async (t) => {
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, OUTBOX_MAX_AGE: '3600' }, logger: quietLogger() });
    const delivered = await createUser(ta.app);
    await ta.deliverMail();
    const linkToken = await latestToken(ta, delivered.email, 'verify_email');
    ta.mail.failing = true;
    const retrying = await createUser(ta.app);
    await ta.worker.drain();
    const queued = await createUser(ta.app);

    const all = await adminCall(ta, 'GET', '/api/v1/admin/outbox?limit=100');
    assert.equal(all.statusCode, 200);
    const messages: Array<Record<string, unknown>> = all.json().messages;
    const text = all.body;
    for (const secret of [delivered.email, retrying.email, queued.email, linkToken, 'Hello']) assert.ok(!text.includes(secret), `leaks ${secret}`);
    assert.deepEqual(Object.keys(messages[0]!).sort(), ['attempts', 'created_at', 'delivered_at', 'failed_at', 'id', 'kind', 'last_error', 'next_attempt_at', 'status']);
    const [newest, middle, oldest] = messages;
    assert.equal(newest?.status, 'queued');
    assert.equal(newest?.attempts, 0);
    assert.equal(middle?.status, 'retrying');
    assert.match(String(middle?.last_error), /SMTP unavailable/);
    assert.ok(middle?.next_attempt_at);
    assert.equal(oldest?.status, 'delivered');
    assert.ok(oldest?.delivered_at);
    assert.equal(oldest?.next_attempt_at, null);

    // Past OUTBOX_MAX_AGE the worker gives up: failed.
    ta.clock.advance(7200);
    await ta.worker.drain();
    const failed = (await adminCall(ta, 'GET', '/api/v1/admin/outbox?status=failed')).json().messages;
    assert.ok(failed.length >= 2);
    assert.ok(failed.every((m: { status: string; failed_at: string | null }) => m.status === 'failed' && m.failed_at));
    assert.equal((await adminCall(ta, 'GET', '/api/v1/admin/outbox?status=queued')).json().messages.length, 0);

    // Pages of one walk every row once.
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { messages: Array<{ id: string }>; next_cursor: string | null } = (await adminCall(ta, 'GET', `/api/v1/admin/outbox?limit=1${cursor ? `&cursor=${cursor}` : ''}`)).json();
      seen.push(...page.messages.map((m) => m.id));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, messages.map((m) => m.id));
    assert.equal((await adminCall(ta, 'GET', '/api/v1/admin/outbox?status=lost')).json().code, 'validation_failed');
  });

  test('only admins see mail status', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const admin = await createAdmin(ta);
    assert.equal((await adminCall(ta, 'GET', '/api/v1/admin/outbox', undefined, admin.token)).statusCode, 200);
    assert.equal((await ta.app.inject({ method: 'GET', url: '/api/v1/admin/outbox' })).statusCode, 401);
    const user = await createUser(ta.app);
    const token = (await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: user.username, password: user.password } })).json().access_token;
    assert.equal((await adminCall(ta, 'GET', '/api/v1/admin/outbox', undefined, token)).json().code, 'admin_required');
  });

  test('AUDIT_RETENTION: the pruner deletes entries older than the setting and keeps the rest; admin audit filters and pages', async (t) => {
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, AUDIT_RETENTION: '30d' } });
    const user = await createUser(ta.app);
    const now = ta.clock().getTime();
    const day = 86_400_000;
    for (const ageDays of [45, 31, 29, 1]) {
      await recordSecurityEvent(ta.deps.db, { ...SYSTEM_CONTEXT, type: 'admin.action', userId: user.uuid, data: { ageDays }, at: new Date(now - ageDays * day) });
    }
    const deleted = await pruneAuditLog(ta.deps);
    assert.ok(deleted >= 2);
    const left = (await adminCall(ta, 'GET', `/api/v1/admin/audit?user=${user.uuid}&type=admin.action`)).json().events.map((e: { data: { ageDays: number } }) => e.data.ageDays);
    assert.deepEqual(left, [1, 29]);
    assert.equal(loadConfig({ NODE_ENV: 'test' }).auditRetentionSeconds, 400 * 86400);

    // Filters: by username, by several types, since; pages newest first.
    const byName = (await adminCall(ta, 'GET', `/api/v1/admin/audit?user=${user.username}&type=user.created,admin.action&limit=2`)).json();
    assert.deepEqual(byName.events.map((e: { type: string }) => e.type), ['admin.action', 'admin.action']);
    const rest = (await adminCall(ta, 'GET', `/api/v1/admin/audit?user=${user.username}&type=user.created,admin.action&limit=2&cursor=${byName.next_cursor}`)).json();
    assert.deepEqual(rest.events.map((e: { type: string }) => e.type), ['user.created']);
    assert.equal(rest.next_cursor, null);
    const since = new Date(now - 2 * day).toISOString();
    const recent = (await adminCall(ta, 'GET', `/api/v1/admin/audit?user=${user.uuid}&type=admin.action&since=${since}`)).json();
    assert.deepEqual(recent.events.map((e: { data: { ageDays: number } }) => e.data.ageDays), [1]);
    assert.deepEqual((await adminCall(ta, 'GET', '/api/v1/admin/audit?user=nobody_at_all')).json().events, []);
    // Values JavaScript takes and PostgreSQL refuses (a bigint past its range, year 0, an offset that
    // moves the instant into year 0 or 10000) are 422s, not failed queries.
    const cursor = (v: unknown) => `cursor=${Buffer.from(JSON.stringify(v)).toString('base64url')}`;
    for (const qs of ['since=yesterday', 'since=2026-02-30T00:00:00Z', 'since=2026-13-01', 'type=DROP%20TABLE', 'limit=500', 'cursor=eyJiIjoieCJ9', 'since=0000-12-31T23:59:59Z', 'since=0001-01-01T00:00:00%2B00:01', 'since=9999-12-31T23:59:59-00:01', cursor({ b: '9223372036854775808' }), cursor({ b: '9999999999999999999' })]) {
      const bad = await adminCall(ta, 'GET', `/api/v1/admin/audit?${qs}`);
      assert.equal(bad.statusCode, 422, qs);
      assert.equal(bad.json().code, 'validation_failed', qs);
    }
    assert.equal((await adminCall(ta, 'GET', `/api/v1/admin/audit?${cursor({ b: '9223372036854775807' })}`)).statusCode, 200);
    const id = '00000000-0000-4000-8000-000000000000';
    for (const c of [{ t: '0000-01-01T00:00:00Z', i: id }, { t: '0001-01-01T00:00:00+00:01', i: id }, { t: '-271821-04-20T00:00:00Z', i: id }, { t: new Date().toISOString(), i: '-'.repeat(36) }]) {
      const bad = await adminCall(ta, 'GET', `/api/v1/admin/outbox?${cursor(c)}`);
      assert.equal(bad.statusCode, 422, JSON.stringify(c));
    }
  });
});
