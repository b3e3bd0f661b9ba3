/** Issue 7: the OpenAPI document is lintable — operationIds, security, problem+json (Redocly runs in CI: npm run lint:openapi). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeWithApp } from '../helpers/app.ts';

type Operation = { operationId?: string; security?: unknown[]; responses: Record<string, { content?: Record<string, unknown> }> };

describeWithApp('OpenAPI document', (suite) => {
  test('every operation has a unique operationId and declares its security; every error response is application/problem+json', async (t) => {
    const { app } = await suite.build(t);
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, Operation>> };
    const ids = new Set<string>();
    let errors = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method.toUpperCase()} ${path}`;
        assert.match(op.operationId ?? '', /^[a-z][A-Za-z0-9]+$/, `${where} has an operationId`);
        assert.ok(!ids.has(op.operationId!), `${where}: operationId ${op.operationId} is unique`);
        ids.add(op.operationId!);
        assert.ok(Array.isArray(op.security), `${where} declares security (public: [])`);
        for (const [status, response] of Object.entries(op.responses)) {
          if (!/^[45]/.test(status)) continue;
          errors++;
          assert.deepEqual(Object.keys(response.content ?? {}), ['application/problem+json'], `${where} ${status}`);
        }
      }
    }
    assert.ok(ids.size >= 30 && errors >= 60, `${ids.size} operations, ${errors} error responses`);
    assert.equal(doc.paths['/api/v1/auth-jwt/login']!.post!.operationId, 'postAuthJwtLogin');
  });

  test('a problem answer really is served as application/problem+json', async (t) => {
    const { app } = await suite.build(t);
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: 'nobody-here', password: 'x' } });
    assert.equal(res.statusCode, 401);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.equal(res.json().code, 'invalid_credentials');
  });
});
