/**
 * Webhook secrets and a rotation of TOTP_ENCRYPTION_KEY. Signing keys and TOTP secrets were re-sealed
 * under the new key; webhook secrets were not, so once the old key was dropped their deliveries were
 * retried forever without a recorded failure (the backlog behind them never pruned), and rotating the
 * secret, the way out, answered 500. Now they are re-sealed at start; one that still cannot be opened
 * fails like any delivery, with the reason in last_error, and can be rotated.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import pino from 'pino';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import { webhookLane } from '../../src/jobs/event-delivery.ts';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import { resealEndpointSecrets, rotateEndpointSecret } from '../../src/services/events/endpoints.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import { createUser, describeWithApp, quietLogger, type TestApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { startReceiver } from '../helpers/webhook-receiver.ts';

const HOOKS = '/api/v1/admin/webhooks';
const oldKey = { kid: 'old', key: randomBytes(32) };
const newKey = { kid: 'new', key: randomBytes(32) };

async function deliver(ta: TestApp, secretBox: SecretBox): Promise<void> {
  const { db, config } = ta.deps;
  const logger = pino({ level: 'silent' });
  await new OutboxWorker({ db, clock: ta.clock, transport: ta.mail, logger, config, lanes: [webhookLane({ db, clock: ta.clock, logger, secretBox, config })] }).drain();
}

describeWithApp('webhook secrets across a rotation of TOTP_ENCRYPTION_KEY', (suite) => {
  test('re-sealed at start under the new key: deliveries go on once the old key is dropped', async (t) => {
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, WEBHOOK_ALLOW_PRIVATE: 'true' }, secretBox: new SecretBox([oldKey]) });
    const r = await startReceiver();
    t.after(() => r.close());
    const { id } = (await adminCall(ta, 'POST', HOOKS, { url: r.url, events: ['user.created'] })).json<{ id: string }>();
    assert.equal((await adminCall(ta, 'POST', `${HOOKS}/${id}/rotate-secret`)).statusCode, 200); // a replaced secret in grace too
    // The operator adds the new key first: a start re-seals; then the old key is dropped.
    assert.equal(await resealEndpointSecrets({ db: ta.deps.db, secretBox: new SecretBox([newKey, oldKey]), logger: quietLogger() }), 1);
    await createUser(ta.app);
    await deliver(ta, new SecretBox([newKey]));
    assert.equal(r.received.length, 1);
    assert.equal(r.received[0]!.signature.split(' ').length, 2, 'signed with the secret and the replaced one');
  });

  test('a secret no configured key opens: a failed attempt with the reason, then the rotation works', async (t) => {
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, WEBHOOK_ALLOW_PRIVATE: 'true' }, secretBox: new SecretBox([oldKey]) });
    const r = await startReceiver();
    t.after(() => r.close());
    const { id } = (await adminCall(ta, 'POST', HOOKS, { url: r.url, events: ['user.created'] })).json<{ id: string }>();
    await createUser(ta.app);
    const newOnly = new SecretBox([newKey]);
    await deliver(ta, newOnly);
    assert.equal(r.received.length, 0);
    const log = (await adminCall(ta, 'GET', `${HOOKS}/${id}/deliveries`)).json<Array<{ attempts: number; last_error: string | null; next_attempt_at: string | null }>>();
    assert.equal(log[0]!.attempts, 1);
    assert.match(log[0]!.last_error ?? '', /TOTP_ENCRYPTION_KEY/);
    const endpoint = await ta.deps.db.query<{ failing_since: Date | null }>('SELECT failing_since FROM webhook_endpoints WHERE id = $1', [id]);
    assert.ok(endpoint.rows[0]!.failing_since, "the endpoint's failure run started (it is marked failing after a day)");

    // The admin rotates it, on an instance with the new key only (the service call behind the route).
    const rotated = await rotateEndpointSecret({ ...ta.deps, secretBox: newOnly }, SYSTEM_CONTEXT, id);
    assert.match(rotated.secret, /^whsec_/);
    ta.clock.advance(3600);
    await deliver(ta, newOnly);
    assert.equal(r.received.length, 1, 'delivered with the new secret');
  });

  test('a replaced secret no key opens does not keep the current one from being re-sealed', async (t) => {
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, WEBHOOK_ALLOW_PRIVATE: 'true' }, secretBox: new SecretBox([oldKey]) });
    const r = await startReceiver();
    t.after(() => r.close());
    const { id } = (await adminCall(ta, 'POST', HOOKS, { url: r.url, events: ['user.created'] })).json<{ id: string }>();
    const lost = new SecretBox([{ kid: 'lost', key: randomBytes(32) }]);
    await ta.deps.db.query("UPDATE webhook_endpoints SET previous_secret_sealed = $2, previous_secret_expires_at = now() + interval '1 day' WHERE id = $1", [id, lost.seal('whsec_' + randomBytes(24).toString('base64'))]);
    assert.equal(await resealEndpointSecrets({ db: ta.deps.db, secretBox: new SecretBox([newKey, oldKey]), logger: quietLogger() }), 1);
    await createUser(ta.app);
    await deliver(ta, new SecretBox([newKey]));
    assert.equal(r.received.length, 1, 'delivered, signed with the current secret');
  });
});
