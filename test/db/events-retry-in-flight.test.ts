/**
 * An admin's retry that meets a delivery in flight, on a real engine (PGlite; also PostgreSQL with
 * DATABASE_URL) and real HTTP receivers: the retry is not lost if that attempt fails, and making an
 * older event the endpoint's head never puts a second attempt in flight beside one another worker
 * is serving.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { before, beforeEach, test } from 'node:test';
import pino from 'pino';
import { loadConfig, type Config } from '../../src/config.ts';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import type { Database } from '../../src/db/database.ts';
import { webhookLane } from '../../src/jobs/event-delivery.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import * as endpoints from '../../src/services/events/endpoints.ts';
import { enqueueEvent } from '../../src/services/events/publish.ts';
import { withDatabases } from '../helpers/pg-database.ts';

const silent = pino({ level: 'silent' });
const secretBox = new SecretBox([{ kid: 't', key: randomBytes(32) }]);

function cfg(env: Record<string, string> = {}): Config {
  return loadConfig({ NODE_ENV: 'test', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT: '10', ...env });
}

/** A receiver that answers `status`, or holds each request until released while `holding`. */
async function holdingReceiver(t: { after(fn: () => Promise<void>): void }) {
  const state = { got: [] as string[], status: 204, holding: false, inFlight: 0, maxInFlight: 0 };
  const held: Array<{ res: ServerResponse; arrived: () => void }> = [];
  const arrivals: Array<() => void> = [];
  const server = createServer((req, res) => {
    state.got.push(String(req.headers['webhook-id']));
    state.inFlight += 1;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    res.on('finish', () => (state.inFlight -= 1));
    req.resume();
    req.on('end', () => {
      if (state.holding) held.push({ res, arrived: () => {} });
      else res.writeHead(state.status).end();
      arrivals.splice(0).forEach((a) => a());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(async () => {
    for (const h of held) h.res.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return {
    state,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    /** Resolves once a request is being held. */
    async untilHeld() {
      while (held.length === 0) await new Promise<void>((r) => arrivals.push(r));
    },
    /** Answers the held requests with `status` and stops holding. */
    release(status: number) {
      state.holding = false;
      for (const h of held.splice(0)) h.res.writeHead(status).end();
    },
  };
}

withDatabases('webhook retry while an attempt is in flight', ({ kind, open }) => {
  let db: Database;
  let other: Database;
  let now: number;
  const clock = () => new Date(now);

  before(async () => {
    const d = await open();
    db = d.db;
    other = kind === 'postgres' ? await d.connectAgain(3) : db;
  });
  beforeEach(async () => {
    await db.query('DELETE FROM events');
    await db.query('DELETE FROM webhook_endpoints');
    now = Math.floor(Date.now() / 1000) * 1000;
  });

  const deps = (config: Config) => ({ config, db, clock, secretBox });
  const lane = (config: Config, on: Database = db) => webhookLane({ db: on, clock, logger: silent, secretBox, config, random: () => 0.5 });
  const emit = (config: Config, type: string) => db.transaction((tx) => enqueueEvent(tx, deps(config), type, {}));
  const entry = async (config: Config, endpointId: string, eventId: string) =>
    (await endpoints.listEndpointDeliveries(deps(config), endpointId)).find((e) => e.event_id === eventId)!;

  for (const [name, ageSeconds] of [['waiting for its backoff', 0], ['given up for its age', 7200]] as const) {
    test(`a retry asked during a failing attempt makes it due at once instead of ${name}`, async (t) => {
      const config = cfg({ WEBHOOK_MAX_AGE: '1h' });
      const r = await holdingReceiver(t);
      const ep = await endpoints.createEndpoint(deps(config), SYSTEM_CONTEXT, { url: r.url, events: ['*'] });
      const id = await emit(config, 'user.updated');
      now += ageSeconds * 1000;
      r.state.holding = true;
      const batch = lane(config).runBatch();
      await r.untilHeld();
      // The admin's retry arrives while the attempt is in flight: accepted (202 over HTTP).
      await endpoints.retryDelivery(deps(config), SYSTEM_CONTEXT, ep.id, id);
      r.release(500);
      assert.deepEqual(await batch, { claimed: 1, sent: 0, more: false });
      const e = await entry(config, ep.id, id);
      assert.equal(e.status, 'pending', 'not given up: the retry renewed its age limit');
      assert.equal(e.next_attempt_at, e.last_attempt_at, 'due again at once, not after a backoff');
      // The clock has not moved: the asked retry goes now and succeeds.
      assert.deepEqual(await lane(config).runBatch(), { claimed: 1, sent: 1, more: false });
      assert.deepEqual(r.state.got, [id, id]);
      assert.equal((await entry(config, ep.id, id)).status, 'delivered');
      // Asked once, honoured once: a later failure waits for its backoff as usual.
      const next = await emit(config, 'user.updated');
      r.state.status = 500;
      await lane(config).runBatch();
      const failedOnce = await entry(config, ep.id, next);
      assert.ok(Date.parse(failedOnce.next_attempt_at!) > Date.parse(failedOnce.last_attempt_at!), 'backoff after a failure nobody asked to retry');
    });
  }

  test('a retry making an older event the head while another worker serves the endpoint: never two attempts in flight', async (t) => {
    const config = cfg({ WEBHOOK_MAX_AGE: '1h' });
    const r = await holdingReceiver(t);
    const ep = await endpoints.createEndpoint(deps(config), SYSTEM_CONTEXT, { url: r.url, events: ['*'] });
    // The first event is given up (its receiver failed past the age limit)...
    const old = await emit(config, 'user.updated');
    now += 7200_000;
    r.state.status = 500;
    await lane(config).runBatch();
    assert.equal((await entry(config, ep.id, old)).status, 'failed');
    // ...and the next ones are being served by one worker (instance) when the admin retries it.
    r.state.status = 204;
    const later = [await emit(config, 'user.updated'), await emit(config, 'user.updated')];
    r.state.holding = true;
    const serving = lane(config).runBatch();
    await r.untilHeld();
    assert.deepEqual(r.state.got.slice(1), [later[0]]);
    await endpoints.retryDelivery(deps(config), SYSTEM_CONTEXT, ep.id, old);
    // Other workers (another instance on PostgreSQL) look for work now: the endpoint is taken.
    const others = await Promise.all([lane(config, other).runBatch(), lane(config, other).runBatch(), lane(config).runBatch()]);
    assert.deepEqual(others.map((o) => o.claimed), [0, 0, 0], 'the retried event waits for the attempt in flight');
    r.release(204);
    await serving;
    // Then everything goes, one at a time.
    for (let i = 0; i < 5 && (await lane(config).runBatch()).claimed > 0; i++);
    assert.equal(r.state.maxInFlight, 1);
    // In the order they were numbered: the retried event is the oldest pending one.
    assert.deepEqual(r.state.got, [old, later[0], old, later[1]]);
    assert.equal((await entry(config, ep.id, old)).status, 'delivered');
  });
});
