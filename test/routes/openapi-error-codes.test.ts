/**
 * The OpenAPI document names, per operation and status, the contract's error codes (api-v1.md's tables,
 * both parts), declares the refusals of any request body (400, 413, 415) and /readyz's 503, and lists
 * the contract's service endpoints whose routes are hidden (discovery, /openapi.json, /docs).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ERROR_CODES, type ErrorCode } from '../../src/errors.ts';
import { describeWithApp } from '../helpers/app.ts';

type Media = { schema?: { properties?: Record<string, { enum?: string[] }> }; example?: { status?: number; code?: string; title?: string } };
type Response = { description?: string; content?: Record<string, Media> };
type Operation = { requestBody?: unknown; responses: Record<string, Response> };
type Doc = { paths: Record<string, Record<string, Operation>> };

/** Contract rows: method and path, then status → codes (an empty list: the contract names the status only). */
const CONTRACT: Array<[string, Record<number, ErrorCode[]>]> = [
  // Users
  ['post /api/v1/user', { 422: ['validation_failed'], 409: ['username_taken', 'email_taken'] }],
  ['get /api/v1/user/{username}', { 404: ['user_not_found'] }],
  ['post /api/v1/user/email/verify', { 400: ['invalid_or_expired_token'] }],
  ['post /api/v1/user/email/verify/resend', { 429: ['too_many_requests'] }],
  ['post /api/v1/user/password/forgot', { 429: ['too_many_requests'] }],
  ['post /api/v1/user/password/reset', { 400: ['invalid_or_expired_token'], 422: [] }],
  ['post /api/v1/user/password/change', { 401: ['invalid_credentials'], 422: [] }],
  // Login, tokens, sessions
  ['post /api/v1/auth-jwt/login', { 401: ['invalid_credentials', 'invalid_security_code'], 403: ['mfa_required', 'account_inactive', 'email_not_verified'], 429: ['too_many_requests'] }],
  ['post /api/v1/auth-jwt/login/mfa', { 401: ['invalid_security_code', 'invalid_token'], 429: ['too_many_requests'] }],
  ['post /api/v1/auth-jwt/login/mfa/email-code', { 400: ['method_not_enabled'], 429: ['too_many_requests'] }],
  ['post /api/v1/auth-jwt/refresh', { 401: ['invalid_token', 'refresh_token_reused'] }],
  ['post /api/v1/auth-jwt/logout', { 401: [] }],
  ['post /api/v1/auth-jwt/logout-all', { 401: [] }],
  ['get /api/v1/auth-jwt/user-info', { 401: [] }],
  ['get /api/v1/auth-jwt/sessions', { 401: [] }],
  ['delete /api/v1/auth-jwt/sessions/{id}', { 401: [], 404: [] }],
  ['post /api/v1/auth-jwt/introspect', { 401: [] }],
  // Second factors
  ['post /api/v1/auth-totp/qrcode', { 401: ['invalid_credentials'], 409: ['totp_already_enabled'] }],
  ['post /api/v1/auth-totp/enroll', { 401: [], 403: ['step_up_required'] }],
  ['post /api/v1/auth-totp/confirm', { 401: ['invalid_security_code'], 409: [] }],
  ['delete /api/v1/auth-totp', { 401: [], 403: ['step_up_required'] }],
  ['post /api/v1/auth-email-otp/enable', { 409: [], 422: ['email_not_verified'] }],
  ['post /api/v1/auth-email-otp/confirm', { 401: ['invalid_security_code'] }],
  ['delete /api/v1/auth-email-otp', { 401: [], 403: [] }],
  ['post /api/v1/backup-codes', { 401: [], 403: [], 409: ['mfa_not_enabled'] }],
  ['get /api/v1/backup-codes', { 401: [] }],
  // Additions: passkeys, administration, events
  ['post /api/v1/passkeys/registration/options', { 401: [], 403: ['step_up_required'] }],
  ['post /api/v1/passkeys/registration/verify', { 400: ['invalid_passkey'], 409: ['passkey_already_registered'] }],
  ['get /api/v1/passkeys', { 401: [] }],
  ['patch /api/v1/passkeys/{id}', { 404: ['passkey_not_found'] }],
  ['delete /api/v1/passkeys/{id}', { 403: [], 404: [] }],
  ['post /api/v1/auth-jwt/login/passkey/options', { 429: ['too_many_requests'] }],
  ['post /api/v1/auth-jwt/login/passkey', { 401: ['invalid_passkey'], 403: ['account_inactive', 'email_not_verified'], 429: ['too_many_requests'] }],
  ['get /api/v1/admin/users', { 401: ['authentication_required'], 403: ['admin_required'] }],
  ['patch /api/v1/admin/users/{uuid}', { 403: ['admin_required'] }],
  ['post /api/v1/admin/webhooks', { 403: ['admin_required'], 422: ['validation_failed'] }],
];

const UNSAFE = new Set(['post', 'put', 'patch', 'delete']);

function problemMedia(response: Response | undefined): Media | undefined {
  return response?.content?.['application/problem+json'];
}

describeWithApp('OpenAPI error codes', (suite) => {
  test('each contract row\'s code is in the declared response of its status, described and enumerated', async (t) => {
    const { app } = await suite.build(t);
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as Doc;
    for (const [row, statuses] of CONTRACT) {
      const [method, path] = row.split(' ') as [string, string];
      const op = doc.paths[path]?.[method];
      assert.ok(op, `${row} is documented`);
      for (const [status, codes] of Object.entries(statuses)) {
        const response = op.responses[status];
        assert.ok(response, `${row} declares ${status}`);
        const media = problemMedia(response);
        const declared = media?.schema?.properties?.code?.enum ?? [];
        assert.ok(declared.length > 0, `${row} ${status} names its codes`);
        for (const code of codes) {
          assert.ok(declared.includes(code), `${row} ${status} has code ${code} (declared: ${declared.join(', ')})`);
          assert.ok(response.description?.includes(`\`${code}\``), `${row} ${status}'s description names ${code}`);
        }
      }
    }
  });

  test('every error response names real codes of its status, with an honest example', async (t) => {
    const { app } = await suite.build(t);
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as Doc;
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [status, response] of Object.entries(op.responses)) {
          if (!/^[45]/.test(status)) continue;
          const where = `${method.toUpperCase()} ${path} ${status}`;
          const media = problemMedia(response);
          const declared = media?.schema?.properties?.code?.enum ?? [];
          assert.ok(declared.length > 0, `${where} names its codes`);
          for (const code of declared) assert.ok(code in ERROR_CODES, `${where}: ${code} is a contract code`);
          const example = media?.example;
          assert.equal(example?.status, Number(status), `${where}: the example has this status`);
          assert.ok(declared.includes(example?.code ?? ''), `${where}: the example's code is one of the declared`);
          assert.equal(example?.title, ERROR_CODES[example!.code as ErrorCode].title, `${where}: the example's title is its code's`);
          checked++;
        }
      }
    }
    assert.ok(checked >= 200, `${checked} error responses`);
  });

  test('every operation that reads a body declares 400, 413 and 415; /readyz declares 503', async (t) => {
    const { app } = await suite.build(t);
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as Doc;
    const expected: Record<string, ErrorCode> = { 400: 'malformed_request', 413: 'payload_too_large', 415: 'unsupported_media_type' };
    let withBody = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        // Fastify parses the body of any unsafe request that has one, whether the route reads it or not.
        if (!op.requestBody && !UNSAFE.has(method)) continue;
        withBody++;
        for (const [status, code] of Object.entries(expected)) {
          const declared = problemMedia(op.responses[status])?.schema?.properties?.code?.enum ?? [];
          assert.ok(declared.includes(code), `${method.toUpperCase()} ${path} declares ${status} ${code}`);
        }
      }
    }
    assert.ok(withBody >= 40, `${withBody} operations take a body`);
    // The URL guard refuses a NUL in any request's query, so every operation declares that 400, and answers it.
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const declared = problemMedia(op.responses['400'])?.schema?.properties?.code?.enum ?? [];
        assert.ok(declared.includes('malformed_request'), `${method.toUpperCase()} ${path} declares 400 malformed_request`);
      }
    }
    for (const url of ['/healthz?x=%00', '/api/v1/auth-jwt/user-info?x=%00', '/.well-known/jwks.json?x=%00']) {
      const res = await app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 400, url);
      assert.equal(res.json().code, 'malformed_request', url);
    }
    const ready = doc.paths['/readyz']!.get!;
    assert.deepEqual(problemMedia(ready.responses['503'])?.schema?.properties?.code?.enum, ['service_unavailable']);
    assert.ok((ready.responses['200']?.content?.['application/json']?.schema?.properties as Record<string, unknown> | undefined)?.status, '/readyz 200 has a schema');
  });

  test('the contract\'s service endpoints are all in the document, and still answer as before', async (t) => {
    const { app } = await suite.build(t);
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as Doc;
    for (const path of ['/.well-known/jwks.json', '/.well-known/openid-configuration', '/openapi.json', '/docs', '/healthz', '/readyz', '/metrics']) {
      assert.ok(doc.paths[path]?.get?.responses['200'], `documents GET ${path}`);
    }
    assert.deepEqual(Object.keys(doc.paths['/.well-known/openid-configuration']!), ['get'], 'only GET of discovery is documented');
    const discovery = await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' });
    assert.equal(discovery.statusCode, 200);
    assert.equal(discovery.json().issuer, 'http://127.0.0.1:8000');
    assert.equal((await app.inject({ method: 'GET', url: '/docs' })).statusCode, 200);
  });
});
