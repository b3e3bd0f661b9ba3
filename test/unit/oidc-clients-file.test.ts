import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseClientsFile } from '../../src/oidc/clients-file.ts';

const SECRET = 'x'.repeat(32);
const ok = { client_id: 'app', client_secret: SECRET, redirect_uris: ['https://app.example/cb'] };

test('a valid file gives the clients with defaults (code grant, client_secret_basic, all scopes)', () => {
  const [c] = parseClientsFile(JSON.stringify([ok]));
  assert.deepEqual(c!.grant_types, ['authorization_code']);
  assert.equal(c!.token_endpoint_auth_method, 'client_secret_basic');
  assert.equal(c!.scope, 'openid profile email offline_access');
  assert.equal(c!.skip_consent, false);
});

test('a client_credentials-only client has no redirect URIs', () => {
  const [c] = parseClientsFile(JSON.stringify([{ client_id: 'svc', client_secret: SECRET, grant_types: ['client_credentials'] }]));
  assert.deepEqual(c!.redirect_uris, []);
  assert.throws(() => parseClientsFile(JSON.stringify([{ client_id: 'svc', client_secret: SECRET, grant_types: ['client_credentials'], redirect_uris: ['https://a.example/cb'] }])),
    /OIDC_CLIENTS_FILE: \[0\]\.redirect_uris must be absent/);
});

test('every refusal names the file, the entry and the field', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ ...ok, redirect_uris: ['not a url'] }, /\[0\]\.redirect_uris\[0\] must be an absolute URL/],
    [{ ...ok, redirect_uris: [] }, /\[0\]\.redirect_uris must list at least one URL/],
    [{ ...ok, client_secret: 'short' }, /\[0\]\.client_secret must be a string of at least 32/],
    [{ client_id: 'a', redirect_uris: ['https://a.example/cb'] }, /\[0\]\.client_secret must be a string/],
    [{ ...ok, token_endpoint_auth_method: 'private_key_jwt' }, /\[0\]\.token_endpoint_auth_method must be one of/],
    [{ ...ok, grant_types: ['implicit'] }, /\[0\]\.grant_types\[0\] must be one of/],
    [{ ...ok, scope: 'openid admin' }, /\[0\]\.scope may list only/],
    [{ ...ok, backchannel_logout_uri: 'nope' }, /\[0\]\.backchannel_logout_uri must be an absolute URL/],
    [{ ...ok, skip_consent: 'yes' }, /\[0\]\.skip_consent must be true or false/],
    [{ ...ok, colour: 'red' }, /\[0\]\.colour is not a supported client field/],
    // An empty fragment too: URL#hash is '' for it, but the engine refuses the client at its first request.
    [{ ...ok, redirect_uris: ['https://app.example/cb#'] }, /\[0\]\.redirect_uris\[0\] must not contain a fragment/],
    [{ ...ok, post_logout_redirect_uris: ['https://app.example/#'] }, /\[0\]\.post_logout_redirect_uris\[0\] must not contain a fragment/],
    [{ ...ok, client_id: 'bad id' }, /\[0\]\.client_id must be/],
    [{ client_id: 'p', token_endpoint_auth_method: 'none', client_secret: SECRET, redirect_uris: ['https://a.example/cb'] }, /\[0\]\.client_secret must be absent for a public client/],
  ];
  for (const [entry, message] of cases) assert.throws(() => parseClientsFile(JSON.stringify([entry])), message, JSON.stringify(entry));
  assert.throws(() => parseClientsFile('{'), /OIDC_CLIENTS_FILE: not valid JSON/);
  assert.throws(() => parseClientsFile('{}'), /must be a JSON array/);
  assert.throws(() => parseClientsFile(JSON.stringify([ok, ok])), /\[1\]\.client_id "app" appears twice/);
});

test('start-up stops on a missing or bad file, naming the setting, the entry and the field', async () => {
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { loadClientsFile } = await import('../../src/oidc/clients-file.ts');
  assert.throws(() => loadClientsFile('/nonexistent/clients.json'), /OIDC_CLIENTS_FILE: cannot read \/nonexistent\/clients\.json \(ENOENT\)/);
  const dir = await mkdtemp(join(tmpdir(), 'twofold-oidc-unit-'));
  const file = join(dir, 'clients.json');
  await writeFile(file, JSON.stringify([ok, { client_id: 'svc', client_secret: SECRET, grant_types: ['client_credentials'], backchannel_logout_uri: 'https://a.example/bc' }]));
  assert.throws(() => loadClientsFile(file), /OIDC_CLIENTS_FILE: \[1\]\.backchannel_logout_uri is only for clients with the authorization_code grant/);
  assert.deepEqual(loadClientsFile(undefined), []);
});
