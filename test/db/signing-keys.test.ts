/**
 * Signing keys in the database (issue 9): the first key made exactly once by instances starting
 * together, JWT_PRIVATE_KEY_FILE imported, private parts sealed, and rotation across two instances
 * on one database (separate pools on PostgreSQL) that agree on the current key without a restart,
 * with a verifier holding a cached JWKS, and without logging anyone out.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, exportJWK, calculateJwkThumbprint, jwtVerify } from 'jose';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { randomBytes } from 'node:crypto';
import { generateRsaPem, signingKeyFromPem } from '../../src/crypto/jwt.ts';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import { runKeyJobOnce } from '../../src/jobs/key-rotation.ts';
import { ensureSigningKey } from '../../src/services/signing-keys/open.ts';
import { listKeys, rotateSigningKey } from '../../src/services/signing-keys/rotate.ts';
import { bearer, buildTestApp, createTestClock, createUser, loginTokens, testKeyPem, testSecretBox, type TestApp, type TestClock } from '../helpers/app.ts';
import { withDatabases, type TestDatabase } from '../helpers/pg-database.ts';

const silent = pino({ level: 'silent' });
const DELAY = 600;
const env = { JWT_KEY_ACTIVATION_DELAY: String(DELAY) };

async function twoInstances(t: TestContext, database: TestDatabase, clock: TestClock, extraEnv: Record<string, string> = {}): Promise<[TestApp, TestApp]> {
  const a = await buildTestApp(t, database.db, { clock, env: { ...env, ...extraEnv } });
  const b = await buildTestApp(t, await database.connectAgain(), { clock, env: { ...env, ...extraEnv } });
  return [a, b];
}

const kidOf = (token: string) => decodeProtectedHeader(token).kid;
const userInfo = (ta: TestApp, token: string) => ta.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(token) });
const refresh = (ta: TestApp, token: string) => ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: token } });
async function jwks(ta: TestApp) {
  const res = await ta.app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
  assert.equal(res.statusCode, 200);
  return { set: res.json() as { keys: Array<{ kid: string }> }, cacheControl: String(res.headers['cache-control']) };
}

withDatabases('signing keys', ({ open, kind }) => {
  test('instances starting together on an empty database create exactly one first key', async () => {
    const database = await open();
    await database.db.query('DELETE FROM signing_keys');
    const config = loadConfig({ NODE_ENV: 'test' });
    const clock = createTestClock();
    const pools = await Promise.all(Array.from({ length: 6 }, () => database.connectAgain(2)));
    const created = await Promise.all(pools.map((db) => ensureSigningKey({ config, db, clock, secretBox: testSecretBox, logger: silent })));
    assert.equal(created.filter(Boolean).length, 1, 'one instance made the key, the others found it');
    const rows = (await database.db.query<{ kid: string; origin: string }>('SELECT kid, origin FROM signing_keys')).rows;
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.origin, 'generated');
    assert.equal(rows[0]!.kid, created.find(Boolean));
  });

  test('JWT_PRIVATE_KEY_FILE is imported as the first current key; its private part is stored sealed', async () => {
    const database = await open();
    await database.db.query('DELETE FROM signing_keys');
    const pem = await generateRsaPem();
    const expectedKid = await calculateJwkThumbprint(await exportJWK((await signingKeyFromPem(pem)).publicKey));
    const config = loadConfig({ NODE_ENV: 'test' });
    const clock = createTestClock();
    const deps = { config, db: database.db, clock, secretBox: testSecretBox, logger: silent };
    assert.equal(await ensureSigningKey(deps, { pem, source: 'JWT_PRIVATE_KEY_FILE' }), expectedKid);
    // A later start with another file does not replace or add a key.
    assert.equal(await ensureSigningKey(deps, { pem: await testKeyPem(), source: 'JWT_PRIVATE_KEY_FILE' }), undefined);
    const keys = await listKeys(deps);
    assert.deepEqual(keys.map((k) => [k.kid, k.state]), [[expectedKid, 'current']]);
    const row = (await database.db.query<{ private_key_sealed: string; origin: string }>('SELECT private_key_sealed, origin FROM signing_keys')).rows[0]!;
    assert.equal(row.origin, 'imported');
    assert.match(row.private_key_sealed, /^v1\.test\./, 'sealed by the secret box');
    assert.ok(!row.private_key_sealed.includes('PRIVATE KEY') && !row.private_key_sealed.includes(pem.split('\n')[1]!), 'no PEM in the clear');
    assert.equal(testSecretBox.open(row.private_key_sealed), pem);
  });

  test('TOTP_ENCRYPTION_KEY rotation: a start with a new first key re-seals the signing keys under it', async () => {
    const database = await open();
    await database.db.query('DELETE FROM signing_keys');
    const config = loadConfig({ NODE_ENV: 'test' });
    const clock = createTestClock();
    const oldKey = { kid: 'old', key: randomBytes(32) };
    await ensureSigningKey({ config, db: database.db, clock, secretBox: new SecretBox([oldKey]), logger: silent });
    const sealed = async () => (await database.db.query<{ private_key_sealed: string }>('SELECT private_key_sealed FROM signing_keys')).rows[0]!.private_key_sealed;
    assert.match(await sealed(), /^v1\.old\./);
    const rotatedBox = new SecretBox([{ kid: 'new', key: randomBytes(32) }, oldKey]);
    await ensureSigningKey({ config, db: database.db, clock, secretBox: rotatedBox, logger: silent });
    assert.match(await sealed(), /^v1\.new\./);
    assert.match(rotatedBox.open(await sealed()), /BEGIN PRIVATE KEY/);
  });

  test('a row whose sealed key was swapped for another key is refused at start', async (t) => {
    const database = await open();
    const a = await buildTestApp(t, database.db, { env });
    await rotateSigningKey(a.deps, { ring: a.deps.keys.ring });
    const rows = (await database.db.query<{ kid: string; private_key_sealed: string }>('SELECT kid, private_key_sealed FROM signing_keys ORDER BY seq')).rows;
    await database.db.query('UPDATE signing_keys SET private_key_sealed = $1 WHERE kid = $2', [rows[0]!.private_key_sealed, rows[1]!.kid]);
    await assert.rejects(buildTestApp(t, database.db, { env }), /holds a different key/);
  });

  test(`rotation across two instances${kind === 'postgres' ? ' (two pools)' : ''}: both agree without restart, a cached JWKS suffices, nobody is logged out`, async (t) => {
    const database = await open();
    const clock = createTestClock();
    const [a, b] = await twoInstances(t, database, clock);
    const user = await createUser(a.app);
    const before = await loginTokens(a.app, user);
    const k1 = kidOf(before.access_token);
    assert.equal(kidOf(before.refresh_token), k1);

    // Rotate on A: the new key is served by A at once, in state next; A still signs with k1.
    const rotated = await rotateSigningKey(a.deps, { ring: a.deps.keys.ring });
    assert.equal(rotated.state, 'next');
    assert.equal(rotated.activates_at, new Date(clock().getTime() + DELAY * 1000).toISOString());
    const k2 = rotated.kid;
    assert.notEqual(k2, k1);
    assert.deepEqual((await jwks(a)).set.keys.map((k) => k.kid), [k1, k2], 'current first, then next');
    assert.equal(kidOf((await loginTokens(a.app, user)).access_token), k1, 'a next key does not sign');

    // B learns of it from the database within its refresh interval (30 s), no restart.
    clock.advance(30);
    const fromB = await jwks(b);
    assert.deepEqual(fromB.set.keys.map((k) => k.kid), [k1, k2]);
    const maxAge = Number(/max-age=(\d+)/.exec(fromB.cacheControl)?.[1]);
    assert.ok(maxAge > 0 && maxAge < DELAY, `JWKS max-age ${maxAge} must be shorter than the activation delay`);
    // A verifier caches this set now, and keeps it (it is allowed to, for max-age; we keep it longer).
    const cachedJwks = createLocalJWKSet(fromB.set);

    // At the activation time both instances sign with k2, each from its own reading of the timestamps.
    clock.set(rotated.activates_at);
    const onA = await loginTokens(a.app, user);
    const onB = await loginTokens(b.app, user);
    assert.equal(kidOf(onA.access_token), k2);
    assert.equal(kidOf(onB.access_token), k2);
    assert.deepEqual((await jwks(b)).set.keys.map((k) => k.kid), [k2, k1], 'k1 is still served as previous');
    const verified = await jwtVerify(onB.access_token, cachedJwks, { issuer: a.deps.config.publicUrl, audience: a.deps.config.jwtAudience, currentDate: clock() });
    assert.equal(verified.payload.sub, user.uuid, 'the JWKS cached before activation verifies the new key\'s tokens');
    assert.equal((await userInfo(a, onB.access_token)).statusCode, 200, 'a token B signed verifies on A');

    // Nobody is logged out: the access and refresh tokens signed by k1 before the rotation still work on both.
    assert.equal((await userInfo(b, before.access_token)).statusCode, 200);
    const refreshed = await refresh(b, before.refresh_token);
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    assert.equal(kidOf(refreshed.json().access_token), k2, 'the refreshed pair is signed by the new key');

    const listed = await listKeys(b.deps);
    assert.deepEqual(listed.map((k) => [k.kid, k.state]), [[k2, 'current'], [k1, 'previous']]);
    const lifetime = Math.max(a.deps.config.accessTokenTtlSeconds, a.deps.config.refreshTokenTtlSeconds) + 300;
    assert.equal(listed[1]!.retires_at, new Date(new Date(rotated.activates_at).getTime() + lifetime * 1000).toISOString());

    // k1 retires only after every token it signed has expired: then it is no longer served and the job deletes it.
    clock.set(listed[1]!.retires_at!);
    assert.deepEqual((await jwks(a)).set.keys.map((k) => k.kid), [k2]);
    await runKeyJobOnce({ deps: a.deps, ring: a.deps.keys.ring });
    assert.deepEqual((await database.db.query<{ kid: string }>('SELECT kid FROM signing_keys')).rows.map((r) => r.kid), [k2]);
  });

  test('a key this instance cannot open (another TOTP_ENCRYPTION_KEY) is logged, and the keys read before keep serving', async (t) => {
    const database = await open();
    const errors: string[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => void errors.push(line) });
    const ta = await buildTestApp(t, database.db, { env, logger });
    const user = await createUser(ta.app);
    const kid = kidOf((await loginTokens(ta.app, user)).access_token);
    // Another instance, sealing under a key this one does not hold, rotates.
    const foreignBox = new SecretBox([{ kid: 'other', key: randomBytes(32) }]);
    await rotateSigningKey({ config: ta.deps.config, db: database.db, clock: ta.clock, secretBox: foreignBox, logger: silent });
    ta.clock.advance(DELAY);
    const res = await loginTokens(ta.app, user);
    assert.equal(kidOf(res.access_token), kid, 'still signing with the key it could open');
    assert.equal((await userInfo(ta, res.access_token)).statusCode, 200);
    assert.ok(errors.some((l) => /reading the signing keys failed/.test(l) && /no encryption key with id other/.test(l)), errors.join('\n'));
    // A fresh start with it fails plainly instead.
    await assert.rejects(buildTestApp(t, database.db, { env }), /cannot be opened with TOTP_ENCRYPTION_KEY/);
  });

  test('the JWKS serves next, current and previous at once (current first); only current signs', async (t) => {
    const database = await open();
    const clock = createTestClock();
    const ta = await buildTestApp(t, database.db, { clock, env });
    const k1 = await ta.deps.keys.currentKid();
    const k2 = (await rotateSigningKey(ta.deps, { ring: ta.deps.keys.ring })).kid;
    clock.advance(DELAY);
    const k3 = (await rotateSigningKey(ta.deps, { ring: ta.deps.keys.ring })).kid;
    assert.deepEqual((await listKeys(ta.deps)).map((k) => [k.kid, k.state]), [[k3, 'next'], [k2, 'current'], [k1, 'previous']]);
    assert.deepEqual((await jwks(ta)).set.keys.map((k) => k.kid), [k2, k1, k3]);
    const user = await createUser(ta.app);
    assert.equal(kidOf((await loginTokens(ta.app, user)).access_token), k2);
  });

  test('a token naming a made-up or retired kid is refused (401 invalid_token), after a reload that finds nothing', async (t) => {
    const database = await open();
    const ta = await buildTestApp(t, database.db, { env });
    const user = await createUser(ta.app);
    const { access_token } = await loginTokens(ta.app, user);
    const [h, p, s] = access_token.split('.');
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString());
    for (const kid of ['made-up-kid', 'x'.repeat(43), '']) {
      const forged = `${Buffer.from(JSON.stringify({ ...header, kid })).toString('base64url')}.${p}.${s}`;
      const res = await userInfo(ta, forged);
      assert.equal(res.statusCode, 401, kid);
      assert.equal(res.json().code, 'invalid_token');
    }
    assert.equal((await userInfo(ta, access_token)).statusCode, 200, 'the genuine token still passes');
  });

  test('concurrent rotations: each makes one distinct next key, exactly one key is current at every moment', async (t) => {
    const database = await open();
    const clock = createTestClock();
    const [a, b] = await twoInstances(t, database, clock);
    const user = await createUser(a.app);
    const before = await loginTokens(a.app, user);
    const made = await Promise.all(Array.from({ length: 8 }, (_, i) => rotateSigningKey((i % 2 ? b : a).deps, { ring: (i % 2 ? b : a).deps.keys.ring })));
    assert.equal(new Set(made.map((k) => k.kid)).size, 8);
    assert.ok(made.every((k) => k.state === 'next'));
    const listed = await listKeys(a.deps);
    assert.equal(listed.length, 9);
    assert.deepEqual(listed.filter((k) => k.state === 'current').map((k) => k.kid), [kidOf(before.access_token)]);
    clock.advance(DELAY);
    const after = await listKeys(b.deps);
    assert.equal(after.filter((k) => k.state === 'current').length, 1);
    assert.equal(after.filter((k) => k.state === 'next').length, 0);
    const current = after.find((k) => k.state === 'current')!.kid;
    assert.equal(kidOf((await loginTokens(a.app, user)).access_token), current);
    assert.equal(kidOf((await loginTokens(b.app, user)).access_token), current, 'both instances sign with the same key');
    assert.equal((await refresh(a, before.refresh_token)).statusCode, 200, 'the pre-rotation session survives');
  });

  test('JWT_KEY_ROTATION_INTERVAL: instances ticking together rotate once when due, not before', async (t) => {
    const database = await open();
    const clock = createTestClock();
    const [a, b] = await twoInstances(t, database, clock, { JWT_KEY_ROTATION_INTERVAL: '1h' });
    const tick = () => Promise.all([a, b, a, b].map((x) => runKeyJobOnce({ deps: x.deps, ring: x.deps.keys.ring })));
    await tick();
    assert.equal((await listKeys(a.deps)).length, 1, 'not due yet');
    clock.advance(3600);
    await tick();
    const keys = await listKeys(a.deps);
    assert.deepEqual(keys.map((k) => k.state), ['next', 'current']);
    assert.equal((await database.db.query<{ origin: string }>("SELECT origin FROM signing_keys WHERE origin = 'scheduled'")).rows.length, 1);
    const audited = (await database.db.query<{ actor_kind: string; data: { action: string; kid: string } }>("SELECT actor_kind, data FROM audit_log WHERE type = 'admin.action'")).rows;
    assert.deepEqual(audited.map((r) => [r.actor_kind, r.data.action, r.data.kid]), [['system', 'keys.rotate_scheduled', keys[0]!.kid]]);
    clock.advance(1800);
    await tick();
    assert.equal((await listKeys(a.deps)).length, 2, 'the schedule counts from the newest key');
  });
});
