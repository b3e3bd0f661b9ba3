/**
 * The per-user cap of live registration challenges holds under concurrency: forty simultaneous
 * requests for creation options leave at most five rows (they used to trim and insert in separate
 * statements, and forty at once left thirty-one on PostgreSQL).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { REGISTRATION_CHALLENGES_PER_USER } from '../../src/services/passkeys/registration.ts';
import { createUser, describeWithApp, loginTokens } from '../helpers/app.ts';
import { post } from '../helpers/factors.ts';

describeWithApp('registration challenges per user', (suite) => {
  test('forty simultaneous option requests: every one answered, at most five challenges kept', async (t) => {
    const ta = await suite.build(t, { env: { RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '1000' } });
    const user = await createUser(ta.app);
    const { access_token: access } = await loginTokens(ta.app, user);
    const answers = await Promise.all(Array.from({ length: 40 }, () => post(ta, '/api/v1/passkeys/registration/options', access, {})));
    assert.deepEqual([...new Set(answers.map((r) => r.statusCode))], [200]);
    const rows = await ta.deps.db.query<{ challenge: string }>("SELECT challenge FROM webauthn_challenges WHERE purpose = 'registration' AND user_id = $1", [user.uuid]);
    assert.ok(rows.rows.length <= REGISTRATION_CHALLENGES_PER_USER, `${rows.rows.length} challenges kept`);
    assert.ok(rows.rows.length >= 1);
  });
});
