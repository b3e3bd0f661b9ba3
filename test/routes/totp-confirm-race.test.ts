/**
 * Confirming TOTP with an aal1 session is allowed only while the account has no other factor. A
 * verification link that turns on the e-mailed codes chosen at sign-up, opened at the same instant,
 * must not leave both on with TOTP bound by the password alone: either the link sees TOTP and adds
 * nothing, or the confirmation sees the e-mail factor and asks for aal2 (or finds its session ended
 * by it, as every first factor ends the password-only sessions).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { isEmailOtpEnabled } from '../../src/db/repositories/email-otps.ts';
import { findTotpFactor } from '../../src/db/repositories/totp-factors.ts';
import { bearer, createUser, describeWithApp, loginTokens } from '../helpers/app.ts';
import { latestToken } from '../helpers/mail-links.ts';

describeWithApp('TOTP confirmation racing the sign-up e-mail factor', (suite) => {
  test('a confirmation and the verification link at once never leave both factors on', async (t) => {
    // 32 sign-ups from one address: above the per-IP sign-up quota of the default configuration.
    const ta = await suite.build(t, { env: { RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '200' } });
    let confirmed = 0;
    let total = 0;
    // Two rounds: each confirmation with its link 0-7 ms after it (the link lands anywhere in the
    // confirmation's work, between its first read and its commit), then the links first.
    for (const confirmFirst of [true, false]) {
      const pairs = await Promise.all(Array.from({ length: 16 }, async () => {
        const user = await createUser(ta.app, { mfa: 'email' });
        const { access_token } = await loginTokens(ta.app, user);
        const enrolled = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-totp/enroll', headers: { ...bearer(access_token), accept: 'application/json' } });
        assert.equal(enrolled.statusCode, 201, enrolled.body);
        return { user, access_token, secret: enrolled.json().secret as string };
      }));
      const links: string[] = [];
      for (const p of pairs) links.push(await latestToken(ta, p.user.email, 'verify_email'));
      const confirm = (i: number) => ta.app.inject({ method: 'POST', url: '/api/v1/auth-totp/confirm', headers: bearer(pairs[i]!.access_token), payload: { security_code: totpCodeAt(pairs[i]!.secret, ta.clock()) } });
      const verify = (i: number) => ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token: links[i] } });
      const later = <T>(ms: number, f: () => Promise<T>) => new Promise<T>((resolve, reject) => setTimeout(() => f().then(resolve, reject), ms));
      const firsts = pairs.map((_p, i) => (confirmFirst ? confirm(i) : verify(i)));
      const seconds = pairs.map((_p, i) => later(confirmFirst ? i % 8 : 0, () => (confirmFirst ? verify(i) : confirm(i))));
      const [a, b] = await Promise.all([Promise.all(firsts), Promise.all(seconds)]);
      const confirms = confirmFirst ? a : b;
      const verifies = confirmFirst ? b : a;

      for (const [i, p] of pairs.entries()) {
        total += 1;
        assert.equal(verifies[i]!.statusCode, 200, 'the address is verified either way');
        const totpOn = Boolean((await findTotpFactor(ta.deps.db, p.user.uuid))?.active_secret);
        const emailOn = await isEmailOtpEnabled(ta.deps.db, p.user.uuid);
        assert.ok(!(totpOn && emailOn), `user ${i}: TOTP confirmed at aal1 next to e-mailed codes`);
        assert.ok(totpOn || emailOn, `user ${i}: one of the two came on`);
        if (confirms[i]!.statusCode === 200) {
          confirmed += 1;
          assert.ok(totpOn);
        } else {
          // The e-mailed codes came on first: the aal1 session is told to step up, or, when the link's
          // transaction committed before the confirmation's check, it has ended with the other
          // password-only sessions (a first factor ends them).
          const refused = `${confirms[i]!.statusCode} ${confirms[i]!.json().code}`;
          assert.ok(['403 step_up_required', '401 invalid_token'].includes(refused), refused);
          assert.ok(!totpOn);
        }
      }
    }
    // Both orders happen in a burst like this one; the assertions above hold for each.
    t.diagnostic(`${confirmed} of ${total} confirmations won`);
  });
});
