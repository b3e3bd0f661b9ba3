/**
 * Ids in paths that are not a canonical uuid get the 422 `validation_failed` of any malformed id on
 * every route that takes the shared `Uuid` schema, never a 500: `urn:uuid:<uuid>` passes ajv's
 * `format: 'uuid'` but PostgreSQL refuses it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createTestClock, describeWithApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';

const HOOKS = '/api/v1/admin/webhooks';
const OTHER = '01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e12';

describeWithApp('admin webhooks: malformed ids', (suite) => {
  test('urn:uuid:, braces, no dashes, not a uuid: 422 validation_failed on every route taking an id; the endpoint is untouched', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV, clock: createTestClock(new Date()) });
    const created = (await adminCall(ta, 'POST', HOOKS, { url: 'https://hooks.example.com/ids', events: ['*'] })).json<{ id: string }>();
    for (const bad of [`urn:uuid:${created.id}`, `URN:UUID:${created.id}`, `{${created.id}}`, created.id.replaceAll('-', ''), 'not-a-uuid']) {
      const routes: Array<['GET' | 'POST' | 'DELETE', string]> = [
        ['DELETE', `${HOOKS}/${bad}`],
        ['POST', `${HOOKS}/${bad}/rotate-secret`],
        ['GET', `${HOOKS}/${bad}/deliveries`],
        ['POST', `${HOOKS}/${bad}/retry`],
        ['POST', `${HOOKS}/${bad}/deliveries/${OTHER}/retry`],
        // The event id of an endpoint that exists.
        ['POST', `${HOOKS}/${created.id}/deliveries/${bad}/retry`],
      ];
      for (const [method, url] of routes) {
        const res = await adminCall(ta, method, url);
        assert.equal(res.statusCode, 422, `${method} ${url}: ${res.body}`);
        assert.equal(res.json().code, 'validation_failed', `${method} ${url}`);
      }
    }
    const list = (await adminCall(ta, 'GET', HOOKS)).json<Array<{ id: string }>>();
    assert.deepEqual(list.map((e) => e.id), [created.id], 'nothing was deleted');
  });

  test('the canonical form, in either case, is still an id: found, or 404 when unknown', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV, clock: createTestClock(new Date()) });
    const created = (await adminCall(ta, 'POST', HOOKS, { url: 'https://hooks.example.com/ids', events: ['*'] })).json<{ id: string }>();
    assert.equal((await adminCall(ta, 'GET', `${HOOKS}/${created.id.toUpperCase()}/deliveries`)).statusCode, 200);
    const unknown = await adminCall(ta, 'DELETE', `${HOOKS}/${OTHER.toUpperCase()}`);
    assert.equal(unknown.statusCode, 404);
    assert.equal((await adminCall(ta, 'POST', `${HOOKS}/${created.id}/deliveries/${OTHER}/retry`)).statusCode, 404);
  });
});
