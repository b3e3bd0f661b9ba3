/**
 * The URL settings. Connection URLs hold passwords: a malformed one stops start-up with a message
 * naming the variable, never its value (Node's "Invalid URL" error, raised inside ioredis or
 * nodemailer, carried the whole URL into the start-up log). PUBLIC_URL is an origin: whatever else it
 * held went into every token's issuer and every mailed link.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { createLogger, serializeError } from '../../src/logger.ts';
import { SERVER_ARGS } from '../helpers/root.ts';

const PASSWORD = 'Pa55-word-in-the-url';

/** Runs the server with `env` until it exits (it must: a bad setting ends it at once). */
function startServer(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'twofold-badurl-'));
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...SERVER_ARGS],
      { env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', LOG_LEVEL: 'info', PORT: '0', DATA_DIR: dataDir, ...env }, timeout: 60_000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        rmSync(dataDir, { recursive: true, force: true });
        resolve({ code: err ? ((err as { code?: unknown }).code as number | null) ?? null : 0, output: stdout + stderr });
      },
    );
  });
}

test('a malformed connection URL stops the start with a message naming the variable, and its password is nowhere in the output', async () => {
  for (const [name, value] of [
    ['REDIS_URL', `redis://:${PASSWORD}@127.0.0.1:99999`],
    ['SMTP_URL', `smtp://user:${PASSWORD}@127.0.0.1:99999`],
  ] as const) {
    const { code, output } = await startServer({ [name]: value });
    assert.equal(code, 2, `${name}: a configuration error (exit 2), not a failed start: ${output}`);
    assert.match(output, new RegExp(`configuration error: ${name} must be a URL`), name);
    assert.ok(!output.includes(PASSWORD), `${name}: ${output}`);
  }
});

test('a bad OIDC_CLIENTS_FILE (read once the database is open) stops the start as any bad setting does: one line, exit 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'twofold-badclients-'));
  try {
    const file = join(dir, 'clients.json');
    writeFileSync(file, JSON.stringify([{ client_id: 'wiki', client_secret: 'a client secret that is long enough 123', redirect_uris: ['https://user@rp.example.com/cb'] }]));
    const { code, output } = await startServer({ OIDC_CLIENTS_FILE: file });
    assert.equal(code, 2, output);
    // (stdout holds the start's info lines before it; the error is one line of its own)
    assert.match(output, /^twofold: configuration error: OIDC_CLIENTS_FILE: \[0\]\.redirect_uris\[0\] must not contain user information[^\n]*$/m, output);
    assert.doesNotMatch(output, /start-up failed|"stack"|at .*\.ts:/, 'no stack trace');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('DATABASE_URL, REDIS_URL, SMTP_URL, EVENTS_AMQP_URL: a bad value is a ConfigError naming it, without the value', () => {
  const bad: Array<[string, string]> = [
    ['DATABASE_URL', `postgres://twofold:${PASSWORD}@db:99999/twofold`],
    ['DATABASE_URL', `mysql://twofold:${PASSWORD}@db/twofold`],
    ['DATABASE_URL', `${PASSWORD}`],
    ['REDIS_URL', `redis://:${PASSWORD}@redis:99999`],
    ['REDIS_URL', `http://:${PASSWORD}@redis:6379`],
    ['REDIS_URL', `redis://:${PASSWORD}@[redis:6379`],
    ['SMTP_URL', `smtp://user:${PASSWORD}@mail:99999`],
    ['SMTP_URL', `not a url ${PASSWORD}`],
    ['SMTP_URL', `https://user:${PASSWORD}@mail`],
    ['EVENTS_AMQP_URL', `amqp://user:${PASSWORD}@broker:99999`],
    ['EVENTS_AMQP_URL', `redis://user:${PASSWORD}@broker`],
  ];
  for (const [name, value] of bad) {
    assert.throws(
      () => loadConfig({ [name]: value }),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${name} must be a URL`) && !e.message.includes(PASSWORD),
      `${name}=${value}`,
    );
  }
});

test('the forms each client takes are accepted as they are (a socket path, pg\'s empty host, spaces pg encodes)', () => {
  const good: Array<[string, string, keyof ReturnType<typeof loadConfig>]> = [
    ['DATABASE_URL', 'postgres://twofold:pw@db:5432/twofold', 'databaseUrl'],
    ['DATABASE_URL', 'postgresql://twofold@db/twofold?sslmode=require', 'databaseUrl'],
    ['DATABASE_URL', 'postgres://twofold:pw@/twofold?host=/var/run/postgresql', 'databaseUrl'],
    ['DATABASE_URL', 'postgres://twofold:p w@db/twofold', 'databaseUrl'],
    ['DATABASE_URL', 'socket:/var/run/postgresql?db=twofold', 'databaseUrl'],
    ['DATABASE_URL', '/var/run/postgresql twofold', 'databaseUrl'],
    ['REDIS_URL', 'redis://redis:6379', 'redisUrl'],
    ['REDIS_URL', 'rediss://:pw@redis:6380/2', 'redisUrl'],
    ['REDIS_URL', '/tmp/redis.sock', 'redisUrl'],
    // ioredis's own short forms, which earlier releases passed on to it.
    ['REDIS_URL', 'localhost:6379', 'redisUrl'],
    ['REDIS_URL', '6379', 'redisUrl'],
    ['SMTP_URL', 'smtp://mailpit:1025?requireTLS=false', 'smtpUrl'],
    ['SMTP_URL', 'smtps://user:pass@smtp.example.com:465', 'smtpUrl'],
  ];
  for (const [name, value, key] of good) assert.equal(loadConfig({ [name]: value })[key], value, `${name}=${value}`);
  assert.equal(loadConfig({ EVENTS_AMQP_URL: 'amqps://u:p@broker:5671/vhost' }).eventsAmqp.url, 'amqps://u:p@broker:5671/vhost');
  assert.equal(loadConfig({ REDIS_URL: ' redis://redis:6379 ' }).redisUrl, 'redis://redis:6379', 'surrounding spaces are dropped');
  assert.equal(loadConfig({ REDIS_URL: '' }).redisUrl, undefined);
});

test('the error serializer drops Node\'s invalid-URL `input` and masks the credentials of a URL in a message', () => {
  let invalid: unknown;
  try {
    new URL(`redis://:${PASSWORD}@127.0.0.1:99999`);
  } catch (e) {
    invalid = e;
  }
  assert.equal((invalid as { input?: string }).input?.includes(PASSWORD), true, 'Node puts the URL into the error');
  const wrapped = new Error(`cannot connect to amqp://twofold:${PASSWORD}@broker:5672/ (refused)`, { cause: invalid });
  const out = JSON.stringify(serializeError(wrapped));
  assert.ok(!out.includes(PASSWORD), out);
  assert.match(out, /amqp:\/\/\*\*\*@broker:5672\/ \(refused\)/, 'the rest of the URL stays');
  assert.match(out, /caused by: TypeError: Invalid URL/, 'the cause is still told');
  const alone = serializeError(invalid) as Record<string, unknown>;
  assert.equal(alone.input, undefined);
  assert.equal(alone.errorCode, 'ERR_INVALID_URL', 'what went wrong is still named');

  // The same through the process logger, as instance.ts logs a failed start.
  const lines: string[] = [];
  const logger = createLogger({ logLevel: 'info' }, new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(String(chunk)); cb(); } }));
  logger.fatal({ err: invalid }, 'start-up failed');
  assert.equal(lines.length, 1);
  assert.ok(!lines[0]!.includes(PASSWORD), lines[0]);
  assert.match(lines[0]!, /Invalid URL/);
});

test('PUBLIC_URL: spaces are dropped; credentials, a query, a fragment or a path stop the start', () => {
  for (const value of [' https://auth.example.com', 'https://auth.example.com ', 'https://auth.example.com/', 'https://auth.example.com//']) {
    const c = loadConfig({ PUBLIC_URL: value });
    assert.equal(c.publicUrl, 'https://auth.example.com', JSON.stringify(value));
    assert.equal(c.publicOrigin, 'https://auth.example.com');
  }
  // The issuer stays as written (verifiers compare `iss` exactly); the origin is the normal form.
  const written = loadConfig({ PUBLIC_URL: 'HTTPS://Auth.Example.COM:443/' });
  assert.equal(written.publicUrl, 'HTTPS://Auth.Example.COM:443');
  assert.equal(written.publicOrigin, 'https://auth.example.com');
  assert.equal(loadConfig({ PUBLIC_URL: 'http://localhost:8080/' }).publicUrl, 'http://localhost:8080');
  for (const [value, reason] of [
    ['https://user:secret@auth.example.com', /PUBLIC_URL must not contain a user name or password/],
    ['https://auth.example.com/?tenant=1', /PUBLIC_URL must not have a query or fragment/],
    ['https://auth.example.com?', /PUBLIC_URL must not have a query or fragment/],
    ['https://auth.example.com/#top', /PUBLIC_URL must not have a query or fragment/],
    ['https://auth.example.com/#', /PUBLIC_URL must not have a query or fragment/],
    // Nothing serves under a base path: the OpenID endpoints would disagree with the issuer.
    ['https://auth.example.com/auth', /PUBLIC_URL must be the service's origin .* without a path/],
    ['https://example.com/twofold/', /PUBLIC_URL must be the service's origin .* without a path/],
  ] as const) {
    assert.throws(() => loadConfig({ PUBLIC_URL: value }), (e: unknown) => e instanceof ConfigError && reason.test(e.message), value);
  }
  // An unparsable one is named with its credentials masked.
  assert.throws(() => loadConfig({ PUBLIC_URL: 'https://user:secret@auth.example.com:99999' }), (e: unknown) => e instanceof ConfigError && /^PUBLIC_URL/.test(e.message) && !e.message.includes('secret'));
});
