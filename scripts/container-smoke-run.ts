/**
 * The running half of scripts/container-smoke.sh: starts the staged image contents
 * (`node dist/server.js` in a directory holding only dist/, bin/ and production node_modules) with
 * compose.yaml's environment for the `twofold` service, the service hosts replaced by this machine's
 * PostgreSQL (a fresh database), Redis and an SMTP catcher; then walks the README's operator path:
 * /healthz, /readyz, the Dockerfile's HEALTHCHECK command, a first admin and a key rotation through the
 * staged `twofold` command, the admin API showing both, a sign-up whose mail reaches the catcher,
 * and a clean SIGTERM. Exits non-zero on the first failure.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../test/helpers/net.ts';
import { adminQuery } from '../test/helpers/pg-database.ts';
import { startSmtpSink } from '../test/helpers/smtp-sink.ts';
import { readCompose, serviceEnvironment } from './compose-env.ts';

const ROOT = new URL('../', import.meta.url).pathname;
const stage = process.argv[2];
if (!stage) throw new Error('usage: container-smoke-run.ts <staged directory>');
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

function step(what: string): void {
  console.log(`container-smoke: ${what}`);
}

const admin = (sql: string) => adminQuery(adminUrl, sql);

/** Runs a command in the stage; resolves with its exit code and output. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, stdin = ''): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: stage, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
    child.stdin.end(stdin);
  });
}

const dbName = `twofold_smoke_${randomBytes(5).toString('hex')}`;
const dataDir = mkdtempSync(join(tmpdir(), 'twofold-smoke-data-'));
const sink = await startSmtpSink();
let server: ChildProcess | undefined;
let serverOutput = '';
try {
  await admin(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(adminUrl);
  dbUrl.pathname = `/${dbName}`;
  const port = await freePort();
  const adminKey = randomBytes(24).toString('base64url');

  // compose.yaml's environment, with .env's secrets as an operator would write them.
  const composeEnv = serviceEnvironment(readCompose(join(ROOT, 'compose.yaml')), 'twofold', {
    TOTP_ENCRYPTION_KEY: `k1:${randomBytes(32).toString('base64')}`,
    TOKEN_HASH_KEY: randomBytes(32).toString('base64'),
    ADMIN_API_KEY: adminKey,
  });
  // The service names resolve to this machine's servers; the image's DATA_DIR=/data becomes a temp dir.
  assert.match(composeEnv.DATABASE_URL ?? '', /@postgres:5432\//);
  assert.match(composeEnv.REDIS_URL ?? '', /^redis:\/\/redis:6379/);
  assert.match(composeEnv.SMTP_URL ?? '', /^smtp:\/\/mailpit:1025/);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    ...composeEnv,
    DATABASE_URL: dbUrl.toString(),
    REDIS_URL: redisUrl,
    SMTP_URL: `smtp://127.0.0.1:${sink.port}`,
    PORT: String(port),
    PUBLIC_URL: `http://localhost:${port}`,
    DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
  };
  // The image's CMD, exactly as the Dockerfile writes it (node flags included).
  const startCmd = /^CMD (\[.*\])\s*$/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1];
  assert.ok(startCmd, 'the Dockerfile has a CMD in exec form');
  const [node, ...startArgs] = JSON.parse(startCmd) as string[];
  assert.equal(node, 'node');
  step(`starting ${startArgs.join(' ')} (NODE_ENV=${env.NODE_ENV}, HOST=${env.HOST}, port ${port}, PostgreSQL ${dbName}, Redis, SMTP catcher)`);
  server = spawn(process.execPath, startArgs, { cwd: stage, env, stdio: ['ignore', 'pipe', 'pipe'] });
  server.stdout!.on('data', (d) => (serverOutput += d));
  server.stderr!.on('data', (d) => (serverOutput += d));
  const base = `http://127.0.0.1:${port}`;
  let up = false;
  for (let i = 0; i < 240 && !up; i++) {
    if (server.exitCode !== null) throw new Error(`the server exited (${server.exitCode})`);
    up = await fetch(`${base}/healthz`).then((r) => r.ok, () => false);
    if (!up) await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(up, '/healthz never answered');
  step('/healthz answers');
  const ready = await fetch(`${base}/readyz`);
  assert.equal(ready.status, 200);
  assert.equal((await ready.json()).database, 'postgres');
  step('/readyz answers: database postgres');

  // The Dockerfile's HEALTHCHECK, exactly as written there.
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n\s*/g, ' ');
  const healthcheck = /^HEALTHCHECK .*?CMD (\[.*\])\s*$/m.exec(dockerfile)?.[1];
  assert.ok(healthcheck, 'the Dockerfile has a HEALTHCHECK CMD in exec form');
  const [cmd, ...args] = JSON.parse(healthcheck) as string[];
  assert.equal(cmd, 'node');
  assert.equal((await run(process.execPath, args, env)).code, 0, 'HEALTHCHECK exits 0');
  step('the HEALTHCHECK command passes');

  // The operator's path through the staged `twofold` command (dist/cli, no sources in the stage).
  const twofold = (a: string[], stdin = '') => run(process.execPath, ['bin/twofold.js', ...a], env, stdin);
  const created = await twofold(['users', 'create', 'admin', 'admin@example.com', '--verified', '--password-stdin'], 'a long and unusual passphrase 9\n');
  assert.equal(created.code, 0, created.out);
  assert.equal((await twofold(['users', 'promote', 'admin', 'admin'])).code, 0);
  const rotated = await twofold(['keys', 'rotate', '--json']);
  assert.equal(rotated.code, 0, rotated.out);
  const kid = (JSON.parse(rotated.out) as { kid: string }).kid;
  step(`first admin created and promoted; signing key ${kid} rotated in`);

  const headers = { authorization: `Bearer ${adminKey}` };
  const keys = (await (await fetch(`${base}/api/v1/admin/keys`, { headers })).json()) as { keys: Array<{ kid: string; state: string }> };
  assert.deepEqual(keys.keys.map((k) => k.state), ['next', 'current']);
  assert.equal(keys.keys[0]!.kid, kid);
  const audit = (await (await fetch(`${base}/api/v1/admin/audit?type=admin.action,user.created,user.updated`, { headers })).json()) as { events: Array<{ type: string }> };
  assert.deepEqual(audit.events.map((e) => e.type).sort(), ['admin.action', 'user.created', 'user.updated']);
  step('the admin API lists the keys and the audit trail');

  const signup = await fetch(`${base}/api/v1/user`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'bob', email: 'bob@example.com', password1: 'another long passphrase 4', password2: 'another long passphrase 4' }),
  });
  assert.equal(signup.status, 201);
  for (let i = 0; i < 120 && sink.to('bob@example.com').length === 0; i++) await new Promise((r) => setTimeout(r, 250));
  assert.equal(sink.to('bob@example.com').length, 1, 'the verification mail reached the SMTP catcher');
  step('a sign-up mail reached the SMTP catcher');

  const exited = new Promise<number | null>((resolve) => server!.once('exit', (code) => resolve(code)));
  server.kill('SIGTERM');
  assert.equal(await exited, 0, 'graceful shutdown on SIGTERM');
  server = undefined;
  step('SIGTERM: clean exit');
} catch (e) {
  console.error(`container-smoke: FAILED: ${(e as Error).message}\n--- server output ---\n${serverOutput}`);
  process.exitCode = 1;
} finally {
  server?.kill('SIGKILL');
  await sink.close();
  await admin(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
  rmSync(dataDir, { recursive: true, force: true });
}
