/**
 * Webhook delivery from the events outbox, on a real engine (PGlite; also PostgreSQL with
 * DATABASE_URL) to real HTTP receivers that verify with the reference `standardwebhooks` library.
 * Backoff and age limits are checked by moving the clock; only the timeout and lease tests wait (2–3 s).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, test } from 'node:test';
import pino from 'pino';
import { loadConfig, type Config } from '../../src/config.ts';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import type { Database, Queryable } from '../../src/db/database.ts';
import { webhookLane } from '../../src/jobs/event-delivery.ts';
import { claimRun, markRunDelivered, releaseRun } from '../../src/db/repositories/events/delivery-runs.ts';
import { claimHeads } from '../../src/db/repositories/events/deliveries.ts';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import type { MailTransport } from '../../src/mail/types.ts';
import * as endpoints from '../../src/services/events/endpoints.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import { enqueueEvent } from '../../src/services/events/publish.ts';
import { freePort } from '../helpers/net.ts';
import { withDatabases } from '../helpers/pg-database.ts';
import { startReceiver, verifyWith, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

/**
 * The clock starts at the real time (whole seconds), because receivers verify like real ones: the
 * reference library refuses a webhook-timestamp more than 5 minutes from its own clock.
 */
let START = new Date();
const noMail: MailTransport = { name: 'none', async send() {}, async close() {} };
const silent = pino({ level: 'silent' });
const secretBox = new SecretBox([{ kid: 't', key: randomBytes(32) }]);

function cfg(env: Record<string, string> = {}): Config {
  return loadConfig({ NODE_ENV: 'test', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT: '10', ...env });
}

function movableClock() {
  START = new Date(Math.floor(Date.now() / 1000) * 1000);
  let now = START.getTime();
  const clock = () => new Date(now);
  clock.advance = (s: number) => {
    now += s * 1000;
  };
  return clock;
}

withDatabases('webhook delivery', ({ kind, open }) => {
  let db: Database;
  let connectAgain: (n?: number) => Promise<Database>;
  let clock: ReturnType<typeof movableClock>;
  const receivers: WebhookReceiver[] = [];

  before(async () => {
    const d = await open();
    db = d.db;
    connectAgain = (n) => d.connectAgain(n);
  });
  beforeEach(async () => {
    await db.query('DELETE FROM events');
    await db.query('DELETE FROM webhook_endpoints');
    clock = movableClock();
  });
  after(async () => {
    await Promise.all(receivers.map((r) => r.close()));
  });

  async function receiver(): Promise<WebhookReceiver> {
    const r = await startReceiver();
    receivers.push(r);
    return r;
  }

  function deps(config = cfg()) {
    return { config, db, clock, secretBox, logger: silent };
  }

  async function register(url: string, events = ['*'], config = cfg()) {
    return endpoints.createEndpoint(deps(config), SYSTEM_CONTEXT, { url, events });
  }

  function worker(config = cfg(), on: Database = db) {
    return new OutboxWorker({ db: on, clock, transport: noMail, logger: silent, config, lanes: [webhookLane({ db: on, clock, logger: silent, secretBox, config, random: () => 0.5 })] });
  }

  async function emit(type: string, data: Record<string, unknown> = {}) {
    return db.transaction((tx) => enqueueEvent(tx, deps(), type, data));
  }

  async function log(endpointId: string) {
    return endpoints.listEndpointDeliveries(deps(), endpointId);
  }

  test('an event delivered to a verifying receiver: Standard Webhooks headers, body, once', async () => {
    const r = await receiver();
    const ep = await register(r.url);
    assert.match(ep.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
    r.secrets = [ep.secret];
    const id = await emit('session.revoked', { user_id: 'u1', sid: 's1' });
    assert.equal(await worker().drain(), 1);
    assert.equal(r.received.length, 1);
    const got = r.received[0]!;
    assert.equal(got.id, id);
    assert.equal(got.timestamp, String(START.getTime() / 1000));
    assert.match(got.signature, /^v1,[A-Za-z0-9+/=]+$/);
    assert.equal(got.headers['content-type'], 'application/json');
    assert.deepEqual(got.verified, { type: 'session.revoked', timestamp: START.toISOString(), data: { user_id: 'u1', sid: 's1' } });
    // Nothing twice: a second drain finds nothing due.
    assert.equal(await worker().drain(), 0);
    assert.equal(r.received.length, 1);
    const [entry] = await log(ep.id);
    assert.equal(entry!.status, 'delivered');
    assert.equal(entry!.attempts, 1);
    assert.equal(entry!.last_status_code, 204);
    assert.equal(entry!.delivered_at, START.toISOString());
    // A receiver with another secret refuses it (the signature is really keyed with this one).
    assert.equal(verifyWith([`whsec_${randomBytes(32).toString('base64')}`], got.body, { 'webhook-id': got.id, 'webhook-timestamp': got.timestamp, 'webhook-signature': got.signature }), undefined);
  });

  test('a rolled-back change announces nothing', async () => {
    const r = await receiver();
    await register(r.url);
    await assert.rejects(db.transaction(async (tx) => {
      await enqueueEvent(tx, deps(), 'user.deleted', { user_id: 'u' });
      throw new Error('change failed');
    }), /change failed/);
    assert.equal(await worker().drain(), 0);
    assert.equal(r.received.length, 0);
  });

  test('an endpoint gets only the types it subscribed to, in order of creation', async () => {
    const all = await receiver();
    const some = await receiver();
    await register(all.url);
    await register(some.url, ['user.deleted']);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await emit(i % 2 ? 'user.deleted' : 'login.succeeded', { n: i }));
    await worker().drain();
    assert.deepEqual(all.received.map((x) => x.id), ids);
    assert.deepEqual(some.received.map((x) => x.id), [ids[1], ids[3], ids[5]]);
  });

  test('one batch serves each endpoint\'s queue in order, up to perEndpoint events, and stops at its first failure', async () => {
    const r = await receiver();
    const failing = await receiver();
    const ep = await register(r.url);
    const failingEp = await register(failing.url);
    failing.mode = { kind: 'status', status: 500 };
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await emit('login.succeeded', { n: i }));
    const config = cfg();
    const lane = webhookLane({ db, clock, logger: silent, secretBox, config, perEndpoint: 3, random: () => 0.5 });
    // First batch: three in order to the healthy endpoint; one attempt at the failing one, whose later events wait behind it.
    assert.deepEqual(await lane.runBatch(), { claimed: 4, sent: 3, more: true }, 'the healthy endpoint stopped at perEndpoint: more is due');
    assert.deepEqual(r.received.map((x) => x.id), ids.slice(0, 3));
    assert.deepEqual(failing.received.map((x) => x.id), [ids[0]]);
    const waiting = await log(failingEp.id);
    assert.deepEqual(waiting.filter((e) => e.attempts > 0).map((e) => e.event_id), [ids[0]], 'events behind a failure are not attempted');
    assert.deepEqual(await lane.runBatch(), { claimed: 2, sent: 2, more: false });
    assert.deepEqual(r.received.map((x) => x.id), ids);
    assert.deepEqual((await log(ep.id)).map((e) => [e.status, e.attempts]), ids.map(() => ['delivered', 1]));
  });

  test('a failure in the middle of a run: the acknowledged ones are recorded, the ones after it given back unsent, then sent in order', async (t) => {
    // A receiver that refuses its third request only.
    const got: string[] = [];
    const server = createServer((req, res) => {
      got.push(String(req.headers['webhook-id']));
      req.resume();
      req.on('end', () => res.writeHead(got.length === 3 ? 500 : 204).end());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    t.after(() => new Promise<void>((r) => server.close(() => r())));
    const ep = await register(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await emit('login.succeeded', { n: i }));
    const lane = webhookLane({ db, clock, logger: silent, secretBox, config: cfg(), random: () => 0.5 });
    assert.deepEqual(await lane.runBatch(), { claimed: 5, sent: 2, more: false }, 'the rest waits behind the failure');
    assert.deepEqual(got, ids.slice(0, 3));
    const byId = new Map((await log(ep.id)).map((e) => [e.event_id, e]));
    assert.deepEqual(ids.map((id) => [byId.get(id)!.status, byId.get(id)!.attempts]), [['delivered', 1], ['delivered', 1], ['pending', 1], ['pending', 0], ['pending', 0]]);
    assert.equal(byId.get(ids[2]!)!.last_status_code, 500);
    assert.equal(byId.get(ids[3]!)!.last_attempt_at, null, 'given back as it was: never attempted');
    assert.deepEqual(await lane.runBatch(), { claimed: 0, sent: 0, more: false }, 'nothing before the backoff, and nothing overtakes the failed one');
    clock.advance(2);
    assert.deepEqual(await lane.runBatch(), { claimed: 3, sent: 3, more: false });
    assert.deepEqual(got, [...ids.slice(0, 3), ...ids.slice(2)]);
  });

  test('a run that has used half its lease gives the rest back unsent (no instance sends past its lease)', async () => {
    const r = await receiver();
    const ep = await register(r.url);
    r.mode = { kind: 'slow', delayMs: 1200 };
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await emit('login.succeeded', { n: i }));
    // A 2 s lease: after one 1.2 s answer inside the run, the third event is not sent but given back.
    const lane = webhookLane({ db, clock, logger: silent, secretBox, config: cfg(), leaseSeconds: 2 });
    assert.deepEqual(await lane.runBatch(), { claimed: 3, sent: 2, more: true }, 'the row given back is due at once');
    assert.deepEqual(r.received.map((x) => x.id), ids.slice(0, 2));
    const third = (await log(ep.id)).find((e) => e.event_id === ids[2]);
    assert.deepEqual([third!.status, third!.attempts, third!.last_attempt_at], ['pending', 0, null]);
    r.mode = { kind: 'status', status: 204 };
    assert.deepEqual(await lane.runBatch(), { claimed: 1, sent: 1, more: false });
    assert.deepEqual(r.received.map((x) => x.id), ids);
  });

  test('an endpoint that answers slowly but well is served for its budget per batch, so the batch ends and the others go on', async () => {
    const slow = await receiver();
    const fast = await receiver();
    await register(slow.url);
    await register(fast.url);
    slow.mode = { kind: 'slow', delayMs: 300 };
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) ids.push(await emit('login.succeeded', { n: i }));
    const lane = webhookLane({ db, clock, logger: silent, secretBox, config: cfg(), endpointBudgetMs: 500 });
    const first = await lane.runBatch();
    // The fast endpoint got everything; the slow one its head and what fitted in the budget, the rest given back.
    assert.deepEqual(fast.received.map((x) => x.id), ids);
    const partial = slow.received.length;
    assert.ok(partial >= 1 && partial < ids.length, `the slow endpoint got ${partial} of ${ids.length} in one batch`);
    assert.deepEqual(slow.received.map((x) => x.id), ids.slice(0, partial));
    assert.equal(first.more, true, 'the rows given back are due at once');
    // A new event for the fast endpoint goes out with the next batch, beside the slow one's next share.
    const later = await emit('login.succeeded', { n: 8 });
    await lane.runBatch();
    assert.deepEqual(fast.received.map((x) => x.id), [...ids, later]);
    for (let i = 0; i < 20 && slow.received.length < ids.length + 1; i++) await lane.runBatch();
    assert.deepEqual(slow.received.map((x) => x.id), [...ids, later], 'in order, once each');
  });

  test('claimRun takes only the unbroken run from the oldest pending delivery; releaseRun gives rows back as they were', async () => {
    const r = await receiver();
    const ep = await register(r.url);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await emit('login.succeeded', { n: i }));
    // Another worker holds the second delivery: only the first may go, or the order would break.
    await db.query('UPDATE event_deliveries SET locked_until = $1 WHERE event_id = $2', [new Date(clock().getTime() + 60_000), ids[1]]);
    const run = await claimRun(db, ep.id, clock(), 10, 30);
    assert.deepEqual(run.map((d) => d.event_id), [ids[0]]);
    assert.deepEqual(await claimRun(db, ep.id, clock(), 10, 30), [], 'the head is now held');
    await releaseRun(db, run);
    const [first] = (await log(ep.id)).filter((e) => e.event_id === ids[0]);
    assert.deepEqual([first!.attempts, first!.last_attempt_at], [0, null]);
    await db.query('UPDATE event_deliveries SET locked_until = NULL WHERE event_id = $1', [ids[1]]);
    assert.deepEqual((await claimRun(db, ep.id, clock(), 3, 30)).map((d) => d.event_id), ids.slice(0, 3));
  });

  test('500: retried with backoff and jitter, same webhook-id, the next event waits behind it; other endpoints are not held up', async () => {
    const bad = await receiver();
    const good = await receiver();
    const badEp = await register(bad.url);
    await register(good.url);
    bad.mode = { kind: 'status', status: 500 };
    const first = await emit('user.created');
    const second = await emit('user.updated');
    await worker().drain();
    assert.deepEqual(good.received.map((x) => x.id), [first, second]);
    assert.deepEqual(bad.received.map((x) => x.id), [first]);
    let [, e1] = await log(badEp.id);
    assert.equal(e1!.event_id, first);
    assert.equal(e1!.status, 'pending');
    assert.equal(e1!.last_status_code, 500);
    assert.match(e1!.last_error!, /HTTP 500: receiver says no/);
    // attempt 1, jitter 0.5 → 2^1 * 1.0 = 2 s
    assert.equal(e1!.next_attempt_at, new Date(START.getTime() + 2000).toISOString());
    await worker().drain();
    assert.equal(bad.received.length, 1, 'not before its backoff');
    clock.advance(2);
    await worker().drain();
    assert.deepEqual(bad.received.map((x) => x.id), [first, first]);
    [, e1] = await log(badEp.id);
    assert.equal(e1!.next_attempt_at, new Date(clock().getTime() + 4000).toISOString(), 'doubles');
    bad.mode = { kind: 'status', status: 200 };
    clock.advance(4);
    await worker().drain();
    assert.deepEqual(bad.received.map((x) => x.id), [first, first, first, second]);
    assert.equal(new Set(bad.received.slice(0, 3).map((x) => x.signature)).size, 3, 'each attempt signs its own timestamp');
    const entries = await log(badEp.id);
    assert.deepEqual(entries.map((e) => [e.event_id, e.status, e.attempts]), [[second, 'delivered', 1], [first, 'delivered', 3]]);
  });

  test('an error answer with a NUL character is recorded (PostgreSQL refuses NUL in text): backoff, then given up', async () => {
    const r = await receiver();
    r.mode = { kind: 'status', status: 500, body: 'bad\u0000input' };
    const config = cfg({ WEBHOOK_MAX_AGE: '60' });
    const ep = await register(r.url, ['*'], config);
    await emit('user.created');
    await worker(config).drain();
    let [d] = await log(ep.id);
    assert.equal(d!.last_status_code, 500);
    assert.equal(d!.last_error, 'HTTP 500: bad\uFFFDinput');
    assert.equal(d!.next_attempt_at, new Date(START.getTime() + 2000).toISOString(), 'its backoff, not a resend at the end of the lease');
    clock.advance(61);
    await worker(config).drain();
    [d] = await log(ep.id);
    assert.equal(d!.status, 'failed', 'given up after WEBHOOK_MAX_AGE');
    assert.equal(r.received.length, 2);
  });

  test('timeout, connection refused, redirect: failures recorded, redirect not followed; a slow receiver within the timeout is fine', async () => {
    const hang = await receiver();
    hang.mode = { kind: 'hang' };
    const target = await receiver();
    const redirect = await receiver();
    redirect.mode = { kind: 'redirect', location: target.url };
    const slow = await receiver();
    slow.mode = { kind: 'slow', delayMs: 300 };
    const refusedUrl = `http://127.0.0.1:${await freePort()}/hook`;
    const eps = {
      hang: await register(hang.url),
      refused: await register(refusedUrl),
      redirect: await register(redirect.url),
      slow: await register(slow.url),
    };
    await emit('user.created');
    // 2 s: the hanging receiver is waited for; the slow one (0.3 s) is well inside even on a busy machine.
    await worker(cfg({ WEBHOOK_TIMEOUT: '2' })).drain();
    const [h] = await log(eps.hang.id);
    assert.match(h!.last_error!, /timeout/);
    assert.equal(h!.status, 'pending');
    const [c] = await log(eps.refused.id);
    assert.match(c!.last_error!, /ECONNREFUSED/);
    const [rd] = await log(eps.redirect.id);
    assert.equal(rd!.last_status_code, 302);
    assert.match(rd!.last_error!, /redirects are not followed/);
    assert.equal(target.received.length, 0, 'the redirect target was never called');
    const [s] = await log(eps.slow.id);
    assert.equal(s!.status, 'delivered');
    assert.equal(hang.received.length, 1);
  });

  test('given up after WEBHOOK_MAX_AGE; marked failing after a day; an admin retry brings it back, a success clears the mark', async () => {
    const r = await receiver();
    r.mode = { kind: 'status', status: 503 };
    const config = cfg({ WEBHOOK_MAX_AGE: '2d' });
    const ep = await register(r.url, ['*'], config);
    const id = await emit('user.deleted');
    const w = worker(config);
    await w.drain();
    let [view] = await endpoints.listEndpoints(deps());
    assert.equal(view!.status, 'active');
    assert.equal(view!.failing_since, START.toISOString());
    clock.advance(86400);
    await w.drain();
    [view] = await endpoints.listEndpoints(deps());
    assert.equal(view!.status, 'failing');
    clock.advance(86400);
    await w.drain();
    let [e] = await log(ep.id);
    assert.equal(e!.status, 'failed');
    assert.equal(e!.attempts, 3);
    const before = r.received.length;
    clock.advance(86400);
    await w.drain();
    assert.equal(r.received.length, before, 'a given-up delivery is not tried again by itself');
    // Admin retry: due now, with a fresh age limit.
    r.mode = { kind: 'status', status: 200 };
    await endpoints.retryDelivery(deps(config), SYSTEM_CONTEXT, ep.id, id);
    await w.drain();
    [e] = await log(ep.id);
    assert.equal(e!.status, 'delivered');
    assert.equal(r.received.at(-1)!.id, id);
    [view] = await endpoints.listEndpoints(deps());
    assert.deepEqual([view!.status, view!.failing_since], ['active', null]);
    await assert.rejects(endpoints.retryDelivery(deps(config), SYSTEM_CONTEXT, ep.id, id), (e: { code?: string }) => e.code === 'already_delivered');
  });

  test('retry all: every waiting delivery goes now', async () => {
    const r = await receiver();
    r.mode = { kind: 'status', status: 500 };
    const ep = await register(r.url);
    await emit('user.created');
    await emit('user.updated');
    await worker().drain();
    assert.equal(r.received.length, 1);
    r.mode = { kind: 'status', status: 200 };
    assert.equal(await endpoints.retryAllDeliveries(deps(), SYSTEM_CONTEXT, ep.id), 2);
    await worker().drain();
    assert.equal(r.received.length, 3);
    assert.deepEqual((await log(ep.id)).map((e) => e.status), ['delivered', 'delivered']);
  });

  test('secret rotation: both signatures during the grace period, then only the new one', async () => {
    const r = await receiver();
    const config = cfg({ WEBHOOK_SECRET_GRACE: '60' });
    const ep = await register(r.url, ['*'], config);
    const rotated = await endpoints.rotateEndpointSecret(deps(config), SYSTEM_CONTEXT, ep.id);
    assert.notEqual(rotated.secret, ep.secret);
    assert.equal(rotated.previous_secret_expires_at, new Date(START.getTime() + 60_000).toISOString());
    await emit('user.created');
    await worker().drain();
    const during = r.received[0]!;
    assert.equal(during.signature.split(' ').length, 2);
    const headers = { 'webhook-id': during.id, 'webhook-timestamp': during.timestamp, 'webhook-signature': during.signature };
    assert.ok(verifyWith([ep.secret], during.body, headers), 'a receiver still on the old secret verifies');
    assert.ok(verifyWith([rotated.secret], during.body, headers), 'a receiver on the new secret verifies');
    clock.advance(60);
    await emit('user.updated');
    await worker().drain();
    const afterGrace = r.received[1]!;
    assert.equal(afterGrace.signature.split(' ').length, 1);
    const h2 = { 'webhook-id': afterGrace.id, 'webhook-timestamp': afterGrace.timestamp, 'webhook-signature': afterGrace.signature };
    assert.equal(verifyWith([ep.secret], afterGrace.body, h2), undefined);
    assert.ok(verifyWith([rotated.secret], afterGrace.body, h2));
  });

  test('SSRF at delivery: a loopback target registered while allowed is refused once WEBHOOK_ALLOW_PRIVATE is off (by IP and by name after DNS)', async () => {
    const r = await receiver();
    const byIp = await register(r.url);
    const byName = await register(r.url.replace('127.0.0.1', 'localhost'));
    // Delivered while allowed: the process now holds kept-alive connections to the receiver.
    await emit('user.created');
    await worker().drain();
    assert.equal(r.received.length, 2);
    await emit('user.created');
    const strict = cfg({ WEBHOOK_ALLOW_PRIVATE: 'false' });
    await worker(strict).drain();
    assert.equal(r.received.length, 2, 'no request reached the receiver, not even over a kept connection');
    const [a] = await log(byIp.id);
    const [b] = await log(byName.id);
    assert.match(a!.last_error!, /refused: 127\.0\.0\.1 is a private/);
    assert.match(b!.last_error!, /refused: .*localhost/);
    assert.equal(a!.attempts, 1, 'the newest delivery (listed first) was refused');
    assert.equal(a!.status, 'pending');
  });

  test('an event nobody receives is not stored; old events are pruned once nothing is pending for them', async () => {
    await emit('user.created');
    const count = async (sql: string) => Number((await db.query<{ n: string }>(sql)).rows[0]!.n);
    assert.equal(await count('SELECT count(*) AS n FROM events'), 0, 'no endpoint, no broker: nothing to keep');
    const ok = await receiver();
    const bad = await receiver();
    bad.mode = { kind: 'status', status: 500 };
    await register(ok.url, ['user.created']);
    await register(bad.url, ['user.deleted']);
    await emit('user.created');
    await emit('user.deleted');
    const config = cfg({ WEBHOOK_MAX_AGE: '40d', WEBHOOK_MAX_BACKOFF: '1d' });
    const w = worker(config);
    await w.drain();
    assert.equal(await count('SELECT count(*) AS n FROM events'), 2);
    clock.advance(31 * 86400);
    await w.drain();
    const left = (await db.query<{ type: string }>('SELECT type FROM events')).rows.map((r) => r.type);
    assert.deepEqual(left, ['user.deleted'], 'the delivered one is pruned, the one still being retried is kept');
  });

  test('deleting an endpoint drops its pending deliveries', async () => {
    const r = await receiver();
    r.mode = { kind: 'status', status: 500 };
    const ep = await register(r.url);
    await emit('user.created');
    await worker().drain();
    await endpoints.deleteEndpoint(deps(), SYSTEM_CONTEXT, ep.id);
    clock.advance(3600);
    await worker().drain();
    assert.equal(r.received.length, 1);
    assert.equal(Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM event_deliveries')).rows[0]!.n), 0);
  });

  test('a claim or a record reads the queue at most once, however long it is (never once per pending row)', async () => {
    // 3 endpoints with 300 pending deliveries each, in a table whose statistics were never gathered
    // (a new or fast-growing table; PGlite never gathers any). Planned from those statistics, the
    // heads' claim read the whole queue once per pending row (809,106 rows here; 300 ms per batch at
    // 3,000 pending deliveries). A single pass (a sequential scan of a table this small) is fine.
    const eps: Array<{ id: string }> = [];
    for (let i = 0; i < 3; i++) eps.push(await register(`http://127.0.0.1:9/h/${i}`));
    const ids = await db.transaction(async (tx) => {
      const out: string[] = [];
      for (let i = 0; i < 300; i++) out.push(await enqueueEvent(tx, deps(), 'login.succeeded', { n: i }));
      return out;
    });
    /** Rows of event_deliveries each statement read (returned or filtered out), from EXPLAIN ANALYZE. */
    const read: Record<string, number> = {};
    type PlanNode = { 'Relation Name'?: string; 'Actual Rows'?: number; 'Actual Loops'?: number; 'Rows Removed by Filter'?: number; Plans?: PlanNode[] };
    const count = (n: PlanNode): number =>
      (n['Relation Name'] === 'event_deliveries' ? ((n['Actual Rows'] ?? 0) + (n['Rows Removed by Filter'] ?? 0)) * (n['Actual Loops'] ?? 1) : 0) +
      (n.Plans ?? []).reduce((a, c) => a + count(c), 0);
    const rollback = new Error('rollback');
    await assert.rejects(db.transaction(async (tx) => {
      const explaining = (name: string): Queryable => ({
        async query<T>(sql: string, params?: readonly unknown[]) {
          const r = await tx.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> | string }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params);
          const plan = r.rows[0]!['QUERY PLAN'];
          if (process.env.SHOW_PLANS) console.log(name, JSON.stringify(plan, null, 1));
          read[name] = (read[name] ?? 0) + count((typeof plan === 'string' ? JSON.parse(plan) : plan)[0].Plan);
          return { rows: [] as T[], rowCount: 0 };
        },
      });
      await claimHeads(explaining('claimHeads'), 'webhook', clock(), 10, 60, []);
      // Past the heads' lease, so the run's whole prefix is free.
      await claimRun(explaining('claimRun'), eps[0]!.id, new Date(clock().getTime() + 120_000), 25, 60);
      await markRunDelivered(explaining('markRunDelivered'), eps[0]!.id, ids.slice(0, 25).map((eventId) => ({ eventId, statusCode: 204 })), clock());
      throw rollback;
    }), rollback);
    const onePass = 900 + 100;
    assert.ok(read.claimHeads! > 0 && read.claimHeads! <= onePass, `claimHeads read ${read.claimHeads} rows for 3 heads`);
    assert.ok(read.claimRun! >= 25 && read.claimRun! <= onePass, `claimRun read ${read.claimRun} rows for a run of 25`);
    assert.ok(read.markRunDelivered! >= 25 && read.markRunDelivered! <= onePass, `markRunDelivered read ${read.markRunDelivered} rows for 25 acknowledgements`);
  });

  test('several workers (two instances on PostgreSQL) deliver one stream: each event once, in order', async () => {
    const receiversHere = [await receiver(), await receiver(), await receiver()];
    for (const r of receiversHere) await register(r.url);
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push(await emit('login.succeeded', { n: i }));
    const other = kind === 'postgres' ? await connectAgain(5) : db;
    const workers = [worker(cfg(), db), worker(cfg(), other), worker(cfg(), db), worker(cfg(), other)];
    await Promise.all(workers.map((w) => w.drain()));
    // A worker stops draining when another holds the heads; drain until nothing is left.
    for (let i = 0; i < 10; i++) await Promise.all(workers.map((w) => w.drain()));
    for (const r of receiversHere) assert.deepEqual(r.received.map((x) => x.id), ids);
  });
});
