/** Which PEM is offered as the first signing key (src/secrets.ts): JWT_PRIVATE_KEY_FILE, or an earlier version's development key file. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { loadSecrets } from '../../src/secrets.ts';

function dir(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'twofold-secrets-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('JWT_PRIVATE_KEY_FILE is offered as the first key; a missing file stops start-up naming it', async (t) => {
  const d = dir(t);
  const file = join(d, 'jwt.pem');
  writeFileSync(file, '-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n');
  const secrets = await loadSecrets(loadConfig({ DATA_DIR: d, JWT_PRIVATE_KEY_FILE: file }));
  assert.equal(secrets.initialKey?.pem.startsWith('-----BEGIN PRIVATE KEY-----'), true);
  assert.match(secrets.initialKey!.source, /JWT_PRIVATE_KEY_FILE/);
  await assert.rejects(loadSecrets(loadConfig({ DATA_DIR: d, JWT_PRIVATE_KEY_FILE: join(d, 'missing.pem') })), /JWT private key file .*missing\.pem does not exist/);
});

test('no file configured: the key an earlier development version left in DATA_DIR is offered, else none (one is generated)', async (t) => {
  const d = dir(t);
  assert.equal((await loadSecrets(loadConfig({ DATA_DIR: d }))).initialKey, undefined);
  writeFileSync(join(d, 'jwt-signing-key.pem'), 'PEM');
  assert.deepEqual((await loadSecrets(loadConfig({ DATA_DIR: d }))).initialKey, { pem: 'PEM', source: join(d, 'jwt-signing-key.pem') });
});
