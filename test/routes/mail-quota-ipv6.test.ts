/**
 * The reset-mail quota's requester and owner on IPv6: a host holds a whole /64, so the owner's
 * privacy address of today (RFC 8981) is still the owner, and a stranger's fresh addresses inside one
 * /64 are one requester.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PASSWORD, createUser, describeWithApp } from '../helpers/app.ts';
import { mailsTo, settleAndDeliver } from '../helpers/mail-links.ts';

const forgot = (email: string, remoteAddress: string) => ({ method: 'POST' as const, url: '/api/v1/user/password/forgot', payload: { email }, remoteAddress });

describeWithApp('reset mails on IPv6', (suite) => {
  test('the owner on another address of the /64 it logged in from still gets its reset mail after strangers used up the shared budget', async (t) => {
    const ta = await suite.build(t, { env: { RATE_LIMIT_EMAIL_MAX_PER_HOUR: '2', RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '1000' } });
    const user = await createUser(ta.app);
    const login = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: user.username, password: PASSWORD }, remoteAddress: '2001:db8:77:1:a1b2:c3d4:e5f6:1' });
    assert.equal(login.statusCode, 200);
    const flood = await Promise.all(Array.from({ length: 20 }, (_, i) => ta.app.inject(forgot(user.email, `2001:db8:${i + 100}::1`))));
    assert.ok(flood.every((r) => r.statusCode === 202));
    await settleAndDeliver(ta);
    assert.equal(mailsTo(ta, user.email, 'password_reset').length, 2, 'the strangers together got the shared budget only');
    // The next day's privacy address of the same host: another interface id in the same /64.
    assert.equal((await ta.app.inject(forgot(user.email, '2001:db8:77:1:9f8e:7d6c:5b4a:2'))).statusCode, 202);
    await settleAndDeliver(ta);
    assert.equal(mailsTo(ta, user.email, 'password_reset').length, 3, "the owner's request went through");
    // An address of another /64 next door is not the owner.
    assert.equal((await ta.app.inject(forgot(user.email, '2001:db8:77:2::5'))).statusCode, 202);
    await settleAndDeliver(ta);
    assert.equal(mailsTo(ta, user.email, 'password_reset').length, 3);
  });

  test('one /64 is one requester for an address: fresh interface ids do not renew its per-requester budget', async (t) => {
    const ta = await suite.build(t, { env: { RATE_LIMIT_EMAIL_MAX_PER_HOUR: '3', RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '1000' } });
    const user = await createUser(ta.app);
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => ta.app.inject(forgot(user.email, `2001:db8:66:1::${(i + 1).toString(16)}`))));
    assert.deepEqual(answers.map((r) => r.statusCode).sort(), [...Array(3).fill(202), ...Array(9).fill(429)]);
  });
});
