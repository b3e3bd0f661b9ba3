/**
 * The OpenID provider's storage adapter on PGlite and PostgreSQL: ids stored only as digests,
 * expiry, consumption by exactly one of many concurrent callers (the loser revokes the grant),
 * grant revocation, purge of expired rows.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeWithApp } from '../helpers/app.ts';
import { createAdapterClass } from '../../src/oidc/adapter.ts';
import { purgeExpired } from '../../src/oidc/session-end.ts';

describeWithApp('oidc adapter', (suite) => {
  test('ids are stored as digests; find, expiry, destroy', async (t) => {
    const { deps } = await suite.build(t);
    const Adapter = createAdapterClass(deps);
    const grants = new Adapter('Grant');
    await grants.upsert('grant-id-1', { accountId: 'acc', clientId: 'c', kind: 'Grant', jti: 'grant-id-1' }, 60);
    const rows = (await deps.db.query<{ id: string }>("SELECT id FROM oidc_payloads WHERE kind = 'Grant'")).rows;
    assert.ok(rows.length >= 1 && rows.every((r) => r.id !== 'grant-id-1'), 'no raw id in the table');
    assert.equal((await grants.find('grant-id-1'))?.accountId, 'acc');
    await grants.upsert('short-lived', { kind: 'Grant', jti: 'short-lived' }, 1);
    await deps.db.query("UPDATE oidc_payloads SET expires_at = now() - interval '1 second' WHERE kind = 'Grant' AND grant_id = 'short-lived'");
    assert.equal(await grants.find('short-lived'), undefined, 'expired rows are not found');
    assert.ok((await purgeExpired(deps)) >= 1);
    await grants.destroy('grant-id-1');
    assert.equal(await grants.find('grant-id-1'), undefined);
  });

  test('the bearer values the engine keeps inside payloads (jti, an interaction session cookie) are stored sealed, and read back whole', async (t) => {
    const { deps } = await suite.build(t);
    const Adapter = createAdapterClass(deps);
    const token = 'refresh-token-value-0123456789abcdefghijklmnop';
    const cookie = 'provider-session-cookie-0123456789abcdefghij';
    await new Adapter('ClientCredentials').upsert(token, { kind: 'ClientCredentials', jti: token, clientId: 'c' } as never, 60);
    await new Adapter('Interaction').upsert('interaction-1', { kind: 'Interaction', jti: 'interaction-1', uid: 'interaction-1', session: { uid: 's1', cookie, accountId: 'acc' } } as never, 60);
    const stored = (await deps.db.query<{ text: string }>('SELECT payload::text AS text FROM oidc_payloads')).rows.map((r) => r.text).join('\n');
    for (const secret of [token, cookie]) assert.ok(!stored.includes(secret), `${secret} is not in the table`);
    assert.equal((await new Adapter('ClientCredentials').find(token))?.jti, token);
    const interaction = await new Adapter('Interaction').find('interaction-1');
    assert.deepEqual([interaction?.jti, (interaction?.session as { cookie?: string; uid?: string }).cookie, (interaction?.session as { uid?: string }).uid], ['interaction-1', cookie, 's1']);
    assert.equal((await new Adapter('Interaction').findByUid('interaction-1'))?.jti, 'interaction-1');
  });

  test('a payload with a NUL is refused as invalid_request and stores nothing; deep nesting (a claims request) is stored', async (t) => {
    const { deps } = await suite.build(t);
    const Adapter = createAdapterClass(deps);
    const codes = new Adapter('ClientCredentials');
    await assert.rejects(codes.upsert('nul', { kind: 'ClientCredentials', jti: 'nul', state: 'a\u0000b' } as never, 60), (e: { error?: string }) => e.error === 'invalid_request');
    assert.equal(await codes.find('nul'), undefined);
    let claims: Record<string, unknown> = { essential: true };
    for (let i = 0; i < 40; i++) claims = { [`level${i}`]: claims };
    await codes.upsert('deep', { kind: 'ClientCredentials', jti: 'deep', claims } as never, 60);
    assert.deepEqual((await codes.find('deep'))?.claims, claims);
    assert.equal(await new Adapter('Client').find('wiki\u0000'), undefined, 'an id PostgreSQL cannot store names no client');
    assert.equal(await new Adapter('Interaction').findByUid('x\u0000'), undefined);
  });

  test('of 20 concurrent consumes of one code exactly one succeeds; the others revoke the grant (invalid_grant)', async (t) => {
    const { deps } = await suite.build(t);
    const Adapter = createAdapterClass(deps);
    const grants = new Adapter('Grant');
    const codes = new Adapter('ClientCredentials');
    await grants.upsert('g-race', { kind: 'Grant', jti: 'g-race' }, 60);
    // ClientCredentials: not session-bound, so find needs no session link; consume is the same code path.
    await codes.upsert('code-race', { kind: 'ClientCredentials', jti: 'code-race', grantId: 'g-race' }, 60);
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => codes.consume('code-race')));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as { error?: string }).error, 'invalid_grant');
    assert.equal(await grants.find('g-race'), undefined, 'the grant is revoked');
  });

  test('revokeByGrantId deletes every model of the grant and nothing else', async (t) => {
    const { deps } = await suite.build(t);
    const Adapter = createAdapterClass(deps);
    const at = new Adapter('ClientCredentials');
    await at.upsert('t1', { jti: 't1', grantId: 'gA' }, 60);
    await at.upsert('t2', { jti: 't2', grantId: 'gA' }, 60);
    await at.upsert('t3', { jti: 't3', grantId: 'gB' }, 60);
    await at.revokeByGrantId('gA');
    assert.equal(await at.find('t1'), undefined);
    assert.equal(await at.find('t2'), undefined);
    assert.equal((await at.find('t3'))?.grantId, 'gB');
  });
});
