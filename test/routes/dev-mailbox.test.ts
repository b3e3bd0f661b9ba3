import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import { devMailboxRoutes, servedHostnames, type DevMailboxEntry } from '../../src/http/routes/dev-mailbox.ts';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import { createDevMailboxTransport } from '../../src/mail/dev-mailbox.ts';
import { enqueueMail } from '../../src/mail/outbox.ts';
import { openTestPglite } from '../helpers/pglite-template.ts';

const config = loadConfig({ NODE_ENV: 'test', PUBLIC_URL: 'https://auth.example.test' });
let db: Database;
let app: FastifyInstance;
let now = new Date('2030-01-01T12:00:00.000Z');
const clock = () => new Date(now);

// One database and app for the file's tests (a describe: top-level hooks would belong to the whole chunk process).
describe('the development mailbox', () => {
  before(async () => {
    db = await openTestPglite();
    app = Fastify();
    await app.register(devMailboxRoutes, { db, hostnames: servedHostnames(config.publicUrl) });
  });
  after(async () => {
    await app.close();
    await db.close();
  });

  test('the development mailbox lists mails newest first, escaped, with their status', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
    const worker = new OutboxWorker({ db, clock, transport: createDevMailboxTransport(logger), logger, config, keepBodies: true });

    const first = await db.transaction((tx) =>
      enqueueMail(tx, { config, clock }, { kind: 'email_otp_login', to: 'a@example.test', data: { username: '<script>x</script>', code: '135790', expiresInMinutes: 10 } }),
    );
    assert.equal(await worker.drain(), 1);
    const records = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    assert.ok(records.some((r) => r.level === 20 && JSON.stringify(r).includes('135790') && JSON.stringify(r).includes(first)), 'the body is logged at debug');
    assert.ok(!records.some((r) => r.level >= 30 && JSON.stringify(r).includes('135790')), 'never at info or above: log collectors keep info');
    assert.ok(records.some((r) => r.level === 30 && JSON.stringify(r).includes(first)), 'that a mail was not sent is logged at info');
    now = new Date(now.getTime() + 1000);
    const second = await db.transaction((tx) =>
      enqueueMail(tx, { config, clock }, { kind: 'password_changed', to: 'b@example.test', data: { username: 'bob' } }),
    );

    const page = await app.inject({ method: 'GET', url: '/dev/mailbox' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.equal(page.headers['cache-control'], 'no-store');
    assert.ok(!page.body.includes('<script>'), 'no raw script: values are escaped and the page has none of its own');
    assert.ok(page.body.includes('&lt;script&gt;x&lt;/script&gt;'));
    assert.ok(page.body.includes('135790'));
    assert.ok(page.body.indexOf('b@example.test') < page.body.indexOf('a@example.test'), 'newest first');
    assert.ok(page.body.includes('delivered') && page.body.includes('queued'));

    const json = await app.inject({ method: 'GET', url: '/dev/mailbox.json' });
    assert.equal(json.statusCode, 200);
    const list = json.json<DevMailboxEntry[]>();
    assert.deepEqual(
      list.map((m) => m.id),
      [second, first],
    );
    const [, otp] = list;
    assert.ok(otp);
    assert.equal(otp.kind, 'email_otp_login');
    assert.equal(otp.to, 'a@example.test');
    assert.match(otp.text, /\b135790\b/);
    assert.ok(otp.html.includes('135790'));
    assert.equal(otp.created_at, '2030-01-01T12:00:00.000Z');
    assert.equal(otp.sent_at, '2030-01-01T12:00:00.000Z');
    assert.equal(list[0]?.sent_at, null);

    const limited = await app.inject({ method: 'GET', url: '/dev/mailbox.json?limit=1' });
    assert.equal(limited.json<DevMailboxEntry[]>().length, 1);
  });

  test('the development mailbox refuses to be registered in production', async () => {
    const prod = Fastify();
    void prod.register(devMailboxRoutes, { db, env: 'production', hostnames: servedHostnames(config.publicUrl) });
    await assert.rejects(async () => prod.ready(), /never be registered in production/);
    await prod.close();
  });

  test('the mailbox answers only under the instance\'s own names: a DNS-rebinding page (its own name in Host) gets 404', async () => {
    const status = async (host: string) => (await app.inject({ method: 'GET', url: '/dev/mailbox.json', headers: { host } })).statusCode;
    // Names of the instance, and IP addresses (no rebinding there: the page's origin would be the address).
    for (const host of ['auth.example.test', 'AUTH.example.test:443', 'localhost:8000', '127.0.0.1:8000', '[::1]:8000', '192.0.2.5:8000', '[2001:db8::1]:8000']) assert.equal(await status(host), 200, host);
    for (const host of ['rebind.attacker.example:8000', 'auth.example.test.attacker.example', 'localhost.attacker.example', 'not a host']) assert.equal(await status(host), 404, host);
    assert.equal((await app.inject({ method: 'GET', url: '/dev/mailbox', headers: { host: 'rebind.attacker.example' } })).statusCode, 404, 'the page too');
  });
});
