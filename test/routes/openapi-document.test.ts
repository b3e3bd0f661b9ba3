/**
 * What the served OpenAPI document says about bodies, media types, response headers and defaults:
 * optional bodies, the introspection form body, Retry-After / Set-Cookie / Location / Cache-Control,
 * /healthz's answer and the page size of the security events.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeWithApp } from '../helpers/app.ts';

type Response = { description: string; content?: Record<string, unknown>; headers?: Record<string, { schema: Record<string, unknown> }> };
type Operation = { requestBody?: { required?: boolean; content: Record<string, unknown> }; parameters?: Array<{ name: string; description?: string; schema: Record<string, unknown> }>; responses: Record<string, Response> };
type Doc = { paths: Record<string, Record<string, Operation>> };

/** The operations whose handlers take a missing body as `{}` (emptyBodyAsObject). */
const OPTIONAL_BODIES = [
  'post /api/v1/auth-jwt/refresh',
  'post /api/v1/auth-jwt/logout',
  'post /api/v1/passkeys/registration/options',
  'post /api/v1/auth-jwt/login/passkey/options',
  'post /api/v1/auth-jwt/login/mfa/passkey/options',
  'delete /api/v1/auth-totp',
  'post /api/v1/auth-jwt/login/mfa/email-code',
];

/** The operations that issue tokens (and set the token cookies). */
const TOKEN_ANSWERS = ['/api/v1/auth-jwt/login', '/api/v1/auth-jwt/login/mfa', '/api/v1/auth-jwt/login/passkey', '/api/v1/auth-jwt/refresh'];

function operations(doc: Doc): Array<[string, Operation]> {
  return Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]): [string, Operation] => [`${method} ${path}`, op]));
}

describeWithApp('OpenAPI document: bodies, headers, defaults', (suite) => {
  test('the served document', async (t) => {
    const { app } = await suite.build(t);
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as Doc;
    const all = operations(doc);
    const op = (key: string) => all.find(([k]) => k === key)?.[1] ?? assert.fail(`${key} is documented`);

    await t.test('bodies the handlers take as optional are not required; every other body is', () => {
      let required = 0;
      for (const [key, operation] of all) {
        assert.ok(!('x-optional-body' in operation), `${key}: the internal mark is left out`);
        if (!operation.requestBody) continue;
        const optional = OPTIONAL_BODIES.includes(key);
        assert.equal(operation.requestBody.required, !optional, key);
        if (!optional) required++;
      }
      for (const key of OPTIONAL_BODIES) assert.ok(op(key).requestBody, `${key} still documents its body`);
      assert.ok(required >= 15, `${required} required bodies`);
    });

    await t.test('introspection takes JSON and forms (RFC 7662 clients send forms)', () => {
      assert.deepEqual(Object.keys(op('post /api/v1/auth-jwt/introspect').requestBody!.content), ['application/json', 'application/x-www-form-urlencoded']);
    });

    await t.test('every 429 declares Retry-After in integer seconds', () => {
      let seen = 0;
      for (const [key, operation] of all) {
        const limited = operation.responses['429'];
        if (!limited) continue;
        seen++;
        assert.equal(limited.headers?.['Retry-After']?.schema.type, 'integer', key);
      }
      assert.ok(seen >= 10, `${seen} rate-limited operations`);
      assert.ok(op('post /api/v1/auth-jwt/login').responses['429'], 'the login is rate limited');
    });

    await t.test('token answers declare Set-Cookie and Cache-Control: no-store', () => {
      for (const path of TOKEN_ANSWERS) {
        const headers = op(`post ${path}`).responses['200']!.headers ?? {};
        assert.ok(headers['Set-Cookie'], `${path}: Set-Cookie`);
        assert.equal(headers['Cache-Control']?.schema.const, 'no-store', `${path}: Cache-Control`);
      }
      // Only the token-issuing answers and the 429s declare headers (and the verification link's 303).
      assert.equal(op('get /api/v1/auth-jwt/user-info').responses['200']!.headers, undefined);
    });

    await t.test('the verification link answers 303 with a Location and no body', () => {
      const redirect = op('get /api/v1/user/email/verify').responses['303']!;
      assert.equal(redirect.headers?.Location?.schema.type, 'string');
      assert.equal(redirect.content, undefined);
    });

    await t.test('/healthz answers {status: "ok"}', () => {
      const ok = op('get /healthz').responses['200']!;
      assert.deepEqual(ok.content, { 'application/json': { schema: { type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ok'] } }, description: 'The process is up' } } });
    });

    await t.test('the security events page size says its own default (20), the admin listings theirs (50)', () => {
      const own = op('get /api/v1/user/security-events').parameters!.find((p) => p.name === 'limit')!;
      assert.equal(own.description, 'Page size, 1 to 100 (default 20)');
      const admin = op('get /api/v1/admin/audit').parameters!.find((p) => p.name === 'limit')!;
      assert.equal(admin.description, 'Page size, 1 to 100 (default 50)');
    });
  });
});
