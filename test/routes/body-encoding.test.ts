/**
 * Bodies are UTF-8 or refused (src/http/body-encoding.ts): a body declared in another charset is 415, bytes
 * that are not UTF-8 are 400, never U+FFFD that makes different passwords equal. Numbers JSON.parse
 * cannot hold (1e999, 1e-400) are 400 instead of being stored as null or 0.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { hasUnrepresentableNumber } from '../../src/http/body-encoding.ts';
import { describeWithApp, uniqueName } from '../helpers/app.ts';

function assertProblem(res: LightMyRequestResponse, status: number, code: string, what: string): void {
  assert.equal(res.statusCode, status, `${what}: ${res.body}`);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/, what);
  assert.equal(res.json().code, code, what);
}

const PASSWORD = 'Grüße aus Köln am Rhein 42';

function signUpJson(name: string, password = PASSWORD, extra = ''): string {
  return `{"username":"${name}","email":"${name}@example.com","password1":"${password}","password2":"${password}"${extra}}`;
}

function send(app: FastifyInstance, url: string, payload: Buffer | string, contentType: string) {
  return app.inject({ method: 'POST', url, payload, headers: { 'content-type': contentType, origin: 'http://127.0.0.1:8000' } });
}

const signUp = (app: FastifyInstance, payload: Buffer | string, contentType = 'application/json') => send(app, '/api/v1/user', payload, contentType);
const login = (app: FastifyInstance, payload: Buffer | string, contentType = 'application/json') => send(app, '/api/v1/auth-jwt/login', payload, contentType);

/** The refused sign-up stored nothing: the same name and address sign up fine afterwards. */
async function assertNothingStored(app: FastifyInstance, name: string): Promise<void> {
  const res = await signUp(app, signUpJson(name, 'a long passphrase 42'));
  assert.equal(res.statusCode, 201, `${name} was not created by the refused request: ${res.body}`);
}

describeWithApp('request body encodings', (suite) => {
  test('a JSON body declared in a charset other than UTF-8 is 415, and creates no user', async (t) => {
    const { app } = await suite.build(t);
    const name = uniqueName('latin');
    const latin1 = Buffer.from(signUpJson(name), 'latin1');
    for (const type of ['application/json; charset=iso-8859-1', 'application/json;charset="ISO-8859-1"', 'application/json; charset=windows-1252', 'application/json; charset=utf-16']) {
      assertProblem(await signUp(app, latin1, type), 415, 'unsupported_media_type', type);
    }
    await assertNothingStored(app, name);
    // UTF-8 and US-ASCII, in any spelling the header allows, are fine.
    for (const type of ['application/json; charset=UTF-8', 'application/json; charset="utf-8"', 'Application/JSON ; Charset=US-ASCII']) {
      const other = uniqueName('cs');
      assert.equal((await signUp(app, signUpJson(other, 'a long passphrase 42'), type)).statusCode, 201, type);
    }
    // Declared US-ASCII but holding other bytes: not what it says.
    assertProblem(await signUp(app, Buffer.from(signUpJson(uniqueName('asc'))), 'application/json; charset=us-ascii'), 400, 'malformed_request', 'UTF-8 labelled US-ASCII');
  });

  test('bytes that are not UTF-8 in an application/json body are 400 malformed_request, and create no user', async (t) => {
    const { app } = await suite.build(t);
    const name = uniqueName('bytes');
    const [head, tail] = signUpJson(name, 'Gr@@e aus K@ln am Rhein 42').split('@@') as [string, string];
    const bad = Buffer.concat([Buffer.from(head), Buffer.from([0xfe, 0xfe]), Buffer.from(tail.replace('@', '\u0080'), 'latin1')]);
    assertProblem(await signUp(app, bad), 400, 'malformed_request', 'FE FE and 80 in a password');
    // A cut multi-byte character, and an overlong encoding of "/", are not UTF-8 either.
    assertProblem(await signUp(app, Buffer.concat([Buffer.from(signUpJson(name).slice(0, -1) + ',"full_name":"'), Buffer.from([0xc3]), Buffer.from('"}')])), 400, 'malformed_request', 'cut character');
    assertProblem(await signUp(app, Buffer.concat([Buffer.from(signUpJson(name).slice(0, -1) + ',"full_name":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])), 400, 'malformed_request', 'overlong');
    await assertNothingStored(app, name);
  });

  test('a UTF-8 password with non-ASCII letters signs up and logs in; other letters, or its Latin-1 bytes, do not', async (t) => {
    const { app } = await suite.build(t);
    const name = uniqueName('utf');
    // With a byte order mark, which RFC 8259 lets a parser ignore (and Fastify's parser did).
    const created = await signUp(app, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(signUpJson(name), 'utf8')]));
    assert.equal(created.statusCode, 201, created.body);
    const ok = await login(app, JSON.stringify({ username: name, password: PASSWORD }));
    assert.equal(ok.statusCode, 200, ok.body);
    const form = await login(app, `username=${name}&password=${encodeURIComponent(PASSWORD)}`, 'application/x-www-form-urlencoded');
    assert.equal(form.statusCode, 200, `the same password as a form: ${form.body}`);
    // Same length, same positions, different letters: with U+FFFD for every byte these were equal.
    assertProblem(await login(app, JSON.stringify({ username: name, password: 'Gräöe aus Kßln am Rhein 42' })), 401, 'invalid_credentials', 'different letters');
    assertProblem(await login(app, Buffer.from(JSON.stringify({ username: name, password: 'Gräöe aus Kßln am Rhein 42' }), 'latin1')), 400, 'malformed_request', 'Latin-1 bytes');
    assertProblem(await login(app, JSON.stringify({ username: name, password: 'Gr\uFFFD\uFFFDe aus K\uFFFDln am Rhein 42' })), 401, 'invalid_credentials', 'U+FFFD');
  });

  test('form bodies: bytes or escapes that are not UTF-8, a stray "%", another charset are refused', async (t) => {
    const { app } = await suite.build(t);
    const FORM = 'application/x-www-form-urlencoded';
    const cases: Array<[string, Buffer | string, number, string, string?]> = [
      ['raw Latin-1 bytes', Buffer.from(`username=alice&password=Gr\u00fc\u00dfe`, 'latin1'), 400, 'malformed_request'],
      ['escapes of Latin-1 bytes', 'username=alice&password=Gr%FC%DFe', 400, 'malformed_request'],
      ['an escape cut short by the next field', 'username=alice%C3&password=x', 400, 'malformed_request'],
      ['an escape cut short by the end', 'username=alice&password=x%C3', 400, 'malformed_request'],
      ['a "%" that starts no escape', 'username=alice&password=50%zz', 400, 'malformed_request'],
      ['a "%" at the very end', 'username=alice&password=x%', 400, 'malformed_request'],
      ['Latin-1 declared', 'username=alice&password=x', 415, 'unsupported_media_type', `${FORM}; charset=iso-8859-1`],
    ];
    for (const [what, payload, status, code, type = FORM] of cases) assertProblem(await login(app, payload, type), status, code, what);
    // Escapes that are UTF-8 (an emoji's four bytes) and an escaped "%" are a form's ordinary contents.
    assertProblem(await login(app, 'username=alice&password=%F0%9F%98%80%25zz', `${FORM}; charset=UTF-8`), 401, 'invalid_credentials', 'valid escapes');
    // A request without a body has nothing to refuse, whatever Content-Type it names.
    for (const type of [`${FORM}; charset=iso-8859-1`, 'application/json; charset=iso-8859-1']) {
      const res = await app.inject({ method: 'GET', url: '/healthz', headers: { 'content-type': type } });
      assert.equal(res.statusCode, 200, `GET with ${type}: ${res.body}`);
    }
    // Nor does a GET whose body the server ignores, or an empty body written `Content-Length: 00`.
    const latin1Form = { 'content-type': `${FORM}; charset=iso-8859-1` };
    const ignored = await app.inject({ method: 'GET', url: '/healthz', headers: latin1Form, payload: 'a=1' });
    assert.equal(ignored.statusCode, 200, `GET with an ignored body: ${ignored.body}`);
    const zero = await app.inject({ method: 'GET', url: '/healthz', headers: { ...latin1Form, 'content-length': '00' } });
    assert.equal(zero.statusCode, 200, `Content-Length 00: ${zero.body}`);
  });

  test('numbers JSON.parse cannot hold (1e999, -1e999, 1e-400) are 400, and nothing is stored', async (t) => {
    const { app } = await suite.build(t);
    for (const profile of ['{"big":1e999}', '{"list":[1,-1e999]}', '{"small":1e-400}', '{"small":-0.5E-330}']) {
      const name = uniqueName('num');
      assertProblem(await signUp(app, signUpJson(name, 'a long passphrase 42', `,"profile":${profile}`)), 400, 'malformed_request', profile);
      await assertNothingStored(app, name);
    }
    // Zero written as zero, and small numbers that JavaScript still holds, are fine.
    const name = uniqueName('num');
    const ok = await signUp(app, signUpJson(name, 'a long passphrase 42', ',"profile":{"a":0e5,"b":-0.000,"c":5e-324,"d":"1e-400"}'));
    assert.equal(ok.statusCode, 201, ok.body);
  });
});

test('hasUnrepresentableNumber finds a literal that became Infinity or a non-zero one that became 0, and nothing inside strings', () => {
  for (const text of ['1e999', '[-1E+400]', '1e-400', '[0, 2.5e-999]', '{"a":{"b":-1E-324}}', `0.${'0'.repeat(400)}1`]) assert.ok(hasUnrepresentableNumber(text), text);
  for (const text of ['0', '-0', '0e-400', '0.0E+10', '5e-324', '{"1e-400":"1e-400 \\" 1e-400"}', '[1, 2.5, -3e10, true, null]']) assert.ok(!hasUnrepresentableNumber(text), text);
});
