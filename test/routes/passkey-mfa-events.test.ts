/**
 * A passkey-only account announces its second factor like TOTP and e-mailed codes do: the first
 * passkey sends mfa.enabled (method passkey), the last one removed mfa.disabled; passkeys between
 * them send only passkey.added / passkey.removed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { auditRowsOf } from '../helpers/admin.ts';
import { createUser, describeWithApp, loginTokens } from '../helpers/app.ts';
import { del } from '../helpers/factors.ts';
import { addPasskey, signInWithPasskey } from '../helpers/passkeys.ts';

describeWithApp('passkeys and the mfa events', (suite) => {
  test('first passkey: mfa.enabled; second: none; removing one: none; removing the last: mfa.disabled', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const aal1 = (await loginTokens(ta.app, user)).access_token;
    const first = await addPasskey(ta, aal1);
    const aal2 = (await signInWithPasskey(ta, first.authenticator)).json().access_token as string;
    const second = await addPasskey(ta, aal2);
    const mfa = async () => (await auditRowsOf(ta, user.uuid)).filter((r) => r.type.startsWith('mfa.')).map((r) => [r.type, r.data.method]);
    assert.deepEqual(await mfa(), [['mfa.enabled', 'passkey']]);
    assert.equal((await del(ta, `/api/v1/passkeys/${second.body.id}`, aal2)).statusCode, 204);
    assert.deepEqual(await mfa(), [['mfa.enabled', 'passkey']], 'a passkey is left');
    assert.equal((await del(ta, `/api/v1/passkeys/${first.body.id}`, aal2)).statusCode, 204);
    assert.deepEqual(await mfa(), [['mfa.enabled', 'passkey'], ['mfa.disabled', 'passkey']]);
  });
});
