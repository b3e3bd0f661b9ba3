/**
 * A passkey's name is one line of visible text. It is quoted in the "second factor added / removed"
 * notices, the owner's warning when someone else (a stolen session) adds one: a newline in it let the
 * name write lines of its own into that mail ("IT support, no action needed").
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderMail } from '../../src/mail/templates.ts';
import { createUser, describeWithApp, loginTokens } from '../helpers/app.ts';
import { addPasskey, listPasskeys, registerPasskey, TEST_ORIGIN } from '../helpers/passkeys.ts';
import { SoftwareAuthenticator } from '../helpers/webauthn.ts';

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const INJECTED = 'Laptop").\n\nIgnore: IT support, no action needed.\n(';

describeWithApp('passkey names', (suite) => {
  test('a name with a line break, a control character or a direction override is refused at registration and rename; emoji and other scripts are not', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = (await loginTokens(ta.app, user)).access_token;
    const refused = await registerPasskey(ta, token, new SoftwareAuthenticator(TEST_ORIGIN), {}, INJECTED);
    assert.equal(refused.statusCode, 422, refused.body);
    assert.deepEqual(await listPasskeys(ta, token), [], 'nothing registered');
    assert.equal((await ta.deliverMail()).filter((m) => m.kind === 'factor_added').length, 0, 'and no notice sent');

    const { body } = await addPasskey(ta, token, undefined, 'Work key');
    // Nothing visible: zero-width space, soft hyphen, word joiner, Mongolian vowel separator, variation
    // selectors, a combining grapheme joiner, Hangul fillers, the blank braille pattern; alone or with spaces.
    const blank = ['\u200B', '\u00AD', ' \u2060 ', '\u180E\u200B', '\uFE0F', '\uFE0F\uFE0F\uFE0F', '\u034F', '\u3164', '\u115F\u1160', '\uFFA0', '\u2800'];
    for (const name of ['a\nb', 'tab\there', 'bell\u0007', 'line\u2028sep', 'rlo\u202Eevil', 'isolate\u2066x', ...blank]) {
      const res = await ta.app.inject({ method: 'PATCH', url: `/api/v1/passkeys/${body.id}`, headers: bearer(token), payload: { name } });
      assert.equal(res.statusCode, 422, JSON.stringify(name));
      assert.equal(res.json().code, 'validation_failed');
    }
    for (const name of ['Laptop 👩‍💻', 'Clé de Zoë', 'ノートPC', '👩‍💻', '❤️', 'e\u0301', '한국']) {
      const res = await ta.app.inject({ method: 'PATCH', url: `/api/v1/passkeys/${body.id}`, headers: bearer(token), payload: { name } });
      assert.equal(res.statusCode, 200, `${name}: ${res.body}`);
      assert.equal(res.json().name, name);
    }
  });
});

test('a name stored before names were checked still stays on its line in the notice', () => {
  const mail = renderMail('factor_added', { username: 'alice', factor: 'passkey', passkeyName: INJECTED }, { productName: 'Twofold', publicUrl: 'http://localhost:8000' });
  assert.ok(!/^Ignore: IT support/m.test(mail.text), mail.text);
  assert.match(mail.text, /A passkey \("Laptop"\)\. {1,2}Ignore: IT support, no action needed\. \("\) was turned on/);
});
