/**
 * The real process, as a new user runs it: `npm start` on a fresh data directory, then the issue's
 * steps 1–5 over HTTP, then a restart on the same directory (the generated key must survive it).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { decodeQrPng } from '../helpers/qr.ts';
import { freePort } from '../helpers/net.ts';
import { startService, stopService } from '../helpers/service-process.ts';



const start = startService;
const stop = stopService;

test('npm start on a fresh directory serves the whole first half of the contract, and survives a restart', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'twofold-e2e-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = String(await freePort());
  const env = { PORT: port, HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', NODE_ENV: 'development', DATABASE_URL: '', SMTP_URL: '', REDIS_URL: '' };
  const base = `http://127.0.0.1:${port}`;
  const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  const first = await start(env);
  // The embedded database and the TOTP key live in the data directory; the signing key lives in the
  // database, sealed under the TOTP key, never as a PEM file. The server holds the directory's lock file.
  assert.ok(existsSync(join(dataDir, 'pglite')), 'PGlite data directory');
  assert.ok(!existsSync(join(dataDir, 'jwt-signing-key.pem')), 'no signing key in the clear');
  const totpKeyFile = join(dataDir, 'totp-encryption.key');
  assert.equal(statSync(totpKeyFile).mode & 0o077, 0, 'the key that seals the signing key is readable by its owner only');
  const holder = readFileSync(join(dataDir, 'twofold.pid'), 'utf8').split('\n')[0];
  assert.match(readFileSync(`/proc/${holder}/cmdline`, 'utf8'), /src\/server\.ts/, 'the data directory is locked by the server process');
  // A second server on the same embedded database would corrupt it: it refuses, naming the holder.
  await assert.rejects(start({ ...env, PORT: String(await freePort()) }), /exited early:[\s\S]*the embedded database in .* is in use by process \d+ .*stop it first/);

  // 1. sign up
  const password = 'a long and unusual passphrase 7';
  const created = await fetch(`${base}/api/v1/user`, json({ username: 'alice', email: 'alice@example.com', password1: password, password2: password }));
  assert.equal(created.status, 201);
  const user = await created.json();

  // 2. public profile
  const profile = await (await fetch(`${base}/api/v1/user/alice`)).json();
  assert.deepEqual(Object.keys(profile).sort(), ['created_at', 'is_active', 'updated_at', 'username']);

  // 3. QR code as PNG → the otpauth URI → a code from the secret
  const qr = await fetch(`${base}/api/v1/auth-totp/qrcode`, json({ username: 'alice', password }));
  assert.equal(qr.status, 201);
  assert.equal(qr.headers.get('content-type'), 'image/png');
  const uri = decodeQrPng(Buffer.from(await qr.arrayBuffer()));
  assert.ok(uri);
  const secret = new URL(uri).searchParams.get('secret')!;
  assert.match(uri, /^otpauth:\/\/totp\/Twofold:alice\?secret=[A-Z2-7]{32}&issuer=Twofold&algorithm=SHA1&digits=6&period=30$/);

  // 4. login with the code (activates TOTP); then password alone needs the second step
  const loggedIn = await fetch(`${base}/api/v1/auth-jwt/login`, json({ username: 'alice@example.com', password, security_code: totpCodeAt(secret, new Date()) }));
  assert.equal(loggedIn.status, 200, await loggedIn.clone().text());
  const tokens = await loggedIn.json();
  assert.equal(decodeJwt(tokens.access_token).aal, 'aal2');
  assert.ok(loggedIn.headers.getSetCookie().some((c) => c.startsWith('access_token=') && /HttpOnly/i.test(c)));
  const challenge = await fetch(`${base}/api/v1/auth-jwt/login`, json({ username: 'alice', password }));
  assert.equal(challenge.status, 403);
  assert.equal((await challenge.json()).code, 'mfa_required');

  // 5. user-info (Bearer), refresh (rotates), logout (revokes at once)
  const info = await fetch(`${base}/api/v1/auth-jwt/user-info`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(info.status, 200);
  const me = await info.json();
  assert.equal(me.uuid, user.uuid);
  assert.equal(me.mfa.totp, true);
  const refreshed = await fetch(`${base}/api/v1/auth-jwt/refresh`, json({ refresh_token: tokens.refresh_token }));
  assert.equal(refreshed.status, 200);
  const pair = await refreshed.json();
  assert.notEqual(pair.refresh_token, tokens.refresh_token);

  // Service endpoints answer.
  for (const path of ['/.well-known/jwks.json', '/.well-known/openid-configuration', '/openapi.json', '/readyz', '/metrics']) {
    assert.equal((await fetch(`${base}${path}`)).status, 200, path);
  }

  // Restart on the same directory: the key and the data are kept, so the token still works.
  await stop(first.child);
  // A key the operator named but that cannot be read stops start-up with one line naming it, exit 2.
  const badKey = await start({ ...env, JWT_PRIVATE_KEY_FILE: join(dataDir, 'missing.pem') }).then(() => 'started', (e: Error) => e.message);
  assert.match(badKey, /exited early:\n/);
  const printed = badKey.slice(badKey.indexOf('\n') + 1).split('\n').filter((l) => l && !/^\{"level"|oidc-provider WARNING/.test(l));
  assert.deepEqual(printed.length, 1, badKey);
  assert.match(printed[0]!, /^twofold: key error: JWT private key file .*missing\.pem does not exist/);
  const second = await start(env);
  // Seen once under load: this fetch failed right after /healthz answered. Say what the server printed.
  const after = await fetch(`${base}/api/v1/auth-jwt/user-info`, { headers: { authorization: `Bearer ${pair.access_token}` } }).catch((err: Error) => {
    throw new Error(`the restarted service did not answer (${err.message}: ${String((err.cause as Error | undefined)?.message)}); exit code ${second.child.exitCode}; its output:\n${second.output()}`, { cause: err });
  });
  assert.equal(after.status, 200, 'tokens survive a restart');
  const out = await fetch(`${base}/api/v1/auth-jwt/logout`, { method: 'POST', headers: { authorization: `Bearer ${pair.access_token}` } });
  assert.equal(out.status, 204);
  const refused = await fetch(`${base}/api/v1/auth-jwt/user-info`, { headers: { authorization: `Bearer ${pair.access_token}` } });
  assert.equal(refused.status, 401);
  assert.equal((await refused.json()).code, 'invalid_token');
});
