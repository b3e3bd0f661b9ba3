/**
 * Rotating a webhook secret twice within the grace period: every replaced secret keeps signing until
 * the end its own rotation announced (the second rotation neither cuts the first one's grace short
 * nor extends it). Signatures are checked per secret against the Standard Webhooks scheme directly,
 * since the test clock moves by hours and a receiver library would refuse the timestamps.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { webhookLane } from '../../src/jobs/event-delivery.ts';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import { createTestClock, createUser, describeWithApp, testSecretBox, type TestApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { startReceiver, type ReceivedWebhook } from '../helpers/webhook-receiver.ts';

const HOOKS = '/api/v1/admin/webhooks';
const HOUR = 3600_000;

async function deliver(ta: TestApp): Promise<void> {
  const { db, config, logger } = ta.deps;
  await new OutboxWorker({ db, clock: ta.clock, transport: ta.mail, logger, config, lanes: [webhookLane({ db, clock: ta.clock, logger, secretBox: testSecretBox, config })] }).drain();
}

/** Which of `secrets` signed the delivery (one `v1,` signature each). */
function signedBy(secrets: Record<string, string>, w: ReceivedWebhook): string[] {
  const sent = w.signature.split(' ');
  return Object.entries(secrets)
    .filter(([, secret]) => sent.includes(`v1,${createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`${w.id}.${w.timestamp}.${w.body}`).digest('base64')}`))
    .map(([name]) => name);
}

describeWithApp('admin webhooks: secret rotation', (suite) => {
  test('a second rotation within the grace period keeps the first replaced secret signing until its own announced end', async (t) => {
    const start = new Date();
    const clock = createTestClock(start);
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, WEBHOOK_ALLOW_PRIVATE: 'true' }, clock });
    const r = await startReceiver();
    t.after(() => r.close());
    const created = (await adminCall(ta, 'POST', HOOKS, { url: r.url, events: ['user.created'] })).json<{ id: string; secret: string }>();
    const first = await adminCall(ta, 'POST', `${HOOKS}/${created.id}/rotate-secret`);
    assert.equal(first.statusCode, 200);
    assert.equal(first.json().previous_secret_expires_at, new Date(start.getTime() + 24 * HOUR).toISOString());
    clock.set(new Date(start.getTime() + HOUR));
    const second = await adminCall(ta, 'POST', `${HOOKS}/${created.id}/rotate-secret`);
    assert.equal(second.statusCode, 200);
    assert.equal(second.json().previous_secret_expires_at, new Date(start.getTime() + 25 * HOUR).toISOString());
    const secrets = { s1: created.secret, s2: first.json().secret as string, s3: second.json().secret as string };

    const deliveredAt = async (at: number): Promise<string[]> => {
      clock.set(new Date(start.getTime() + at));
      await createUser(ta.app);
      await deliver(ta);
      return signedBy(secrets, r.received.at(-1)!);
    };
    assert.deepEqual(await deliveredAt(HOUR), ['s1', 's2', 's3'], 'both replaced secrets still sign');
    assert.deepEqual(await deliveredAt(24 * HOUR + 60_000), ['s2', 's3'], 'the first replaced secret stops at the end its rotation announced');
    assert.deepEqual(await deliveredAt(25 * HOUR + 60_000), ['s3'], 'then the second');
    assert.equal(r.received.length, 3);
  });

  test('two dozen rotations at once: none is lost, the newest secret and 8 replaced ones sign', async (t) => {
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, WEBHOOK_ALLOW_PRIVATE: 'true' } });
    const r = await startReceiver();
    t.after(() => r.close());
    const created = (await adminCall(ta, 'POST', HOOKS, { url: r.url, events: ['user.created'] })).json<{ id: string; secret: string }>();
    const rotations = await Promise.all(Array.from({ length: 24 }, () => adminCall(ta, 'POST', `${HOOKS}/${created.id}/rotate-secret`)));
    assert.ok(rotations.every((x) => x.statusCode === 200));
    const secrets = Object.fromEntries([created.secret, ...rotations.map((x) => x.json().secret as string)].map((s, i) => [`s${i}`, s]));
    await createUser(ta.app);
    await deliver(ta);
    // A rotation that read the row before another committed would drop that one's secret (lost update):
    // then fewer than 9 of the secrets handed out would sign.
    const signers = signedBy(secrets, r.received.at(-1)!);
    assert.equal(signers.length, 9, `signed by ${signers.join(' ')}`);
    assert.equal(r.received.at(-1)!.signature.split(' ').length, 9, 'no signature by a secret nobody was given');
  });
});
