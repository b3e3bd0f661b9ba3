/**
 * The OpenID login step checks the browser's access token (its session live), then reads the session
 * again for its creation time. A logout that commits between the two reads must not log the browser
 * in to an application: the second read is held to the same rules.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import type { Database } from '../../src/db/database.ts';
import { decideLogin, type LoginRequest } from '../../src/services/oidc/interaction-login.ts';
import { createUser, describeWithApp, loginTokens } from '../helpers/app.ts';

const REQUEST: LoginRequest = { reasons: ['no_session'], maxAgeSeconds: undefined, wantsAal2: false, fresh: undefined };

/** `db`, except that `before` runs once, just before the first statement matching `pattern`. */
function withStatementHook(db: Database, pattern: RegExp, before: () => Promise<void>): Database {
  let fired = false;
  return {
    kind: db.kind,
    async query(sql, params) {
      if (!fired && pattern.test(sql)) {
        fired = true;
        await before();
      }
      return db.query(sql, params);
    },
    transaction: (fn) => db.transaction(fn),
    exec: (sql) => db.exec(sql),
    ping: () => db.ping(),
    close: async () => undefined,
  };
}

describeWithApp('the OpenID login decision', (suite) => {
  test('a session logged out between the token check and the decision logs no application in', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const { access_token } = await loginTokens(ta.app, user);
    const sid = decodeJwt(access_token).sid as string;
    assert.equal((await decideLogin(ta.deps, access_token, REQUEST)).kind, 'login', 'a live session logs in');

    const logoutInBetween = withStatementHook(ta.deps.db, /^SELECT \* FROM sessions WHERE id = \$1/, async () => {
      await ta.deps.db.query('UPDATE sessions SET revoked_at = $2, revoked_reason = $3 WHERE id = $1', [sid, ta.clock(), 'logout']);
    });
    const decision = await decideLogin({ ...ta.deps, db: logoutInBetween }, access_token, REQUEST);
    assert.equal(decision.kind, 'hosted_login');
  });
});
