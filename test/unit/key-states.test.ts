/** The signing-key states follow from timestamps alone (services/signing-keys/states.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { CLOCK_SKEW_MARGIN_SECONDS, keyLifetimeSeconds } from '../../src/services/signing-keys/db-key-ring.ts';
import { keyStates } from '../../src/services/signing-keys/states.ts';

const T = (s: string) => new Date(`2026-06-01T${s}Z`);
const LIFETIME = 3600;
const key = (kid: string, seq: number, at: string) => ({ kid, seq, activates_at: T(at) });
const states = (keys: ReturnType<typeof key>[], now: string) => keyStates(keys, T(now), LIFETIME).map((s) => `${s.key.kid}:${s.state}`);

test('one key is current, whatever the time (even before its activation, on a clock behind)', () => {
  assert.deepEqual(states([key('a', 1, '12:00:00')], '13:00:00'), ['a:current']);
  assert.deepEqual(states([key('a', 1, '12:00:00')], '11:00:00'), ['a:current']);
});

test('next → current → previous → retired as time passes', () => {
  const keys = [key('a', 1, '10:00:00'), key('b', 2, '12:10:00')];
  assert.deepEqual(states(keys, '12:00:00'), ['a:current', 'b:next']);
  assert.deepEqual(states(keys, '12:10:00'), ['a:previous', 'b:current'], 'the successor signs from its activation on');
  // a's last token was signed just before 12:10 and lives up to LIFETIME: served until then.
  assert.deepEqual(states(keys, '13:09:59'), ['a:previous', 'b:current']);
  assert.deepEqual(states(keys, '13:10:00'), ['a:retired', 'b:current']);
  const [a, b] = keyStates(keys, T('12:00:00'), LIFETIME);
  assert.equal(a!.retires_at?.toISOString(), T('13:10:00').toISOString());
  assert.equal(b!.retires_at, undefined, 'a key without successor has no retirement date');
});

test('keys activating at the same instant: the later made wins; input order does not matter', () => {
  const keys = [key('late', 3, '12:10:00'), key('a', 1, '10:00:00'), key('early', 2, '12:10:00')];
  assert.deepEqual(states(keys, '12:10:00'), ['a:previous', 'early:previous', 'late:current']);
  assert.deepEqual(states(keys, '12:09:59'), ['a:current', 'early:next', 'late:next']);
});

test('exactly one current key at every moment, for any set of keys', () => {
  const keys = [key('a', 1, '10:00:00'), key('b', 2, '11:00:00'), key('c', 3, '11:30:00'), key('d', 4, '11:30:00'), key('e', 5, '14:00:00')];
  for (let m = 0; m < 24 * 60; m += 7) {
    const now = new Date(T('00:00:00').getTime() + m * 60_000);
    const all = keyStates(keys, now, LIFETIME);
    assert.equal(all.filter((s) => s.state === 'current').length, 1, now.toISOString());
    // Nothing activating later than now is ever current or previous.
    for (const s of all) if (s.key.activates_at > now && s.state !== 'next') assert.equal(s.state, 'current', 'only the fallback first key');
  }
});

test('a replaced key is served as long as the longest-lived token it signed, the OpenID ID token included', () => {
  // Refresh tokens an hour, ID tokens a day: the ID tokens of the old key must verify for that day.
  const config = loadConfig({ REFRESH_TOKEN_TTL: '3600', OIDC_ID_TOKEN_TTL: '86400' });
  assert.equal(keyLifetimeSeconds(config), 86400 + CLOCK_SKEW_MARGIN_SECONDS);
  const longRefresh = loadConfig({ REFRESH_TOKEN_TTL: '864000', OIDC_ID_TOKEN_TTL: '86400' });
  assert.equal(keyLifetimeSeconds(longRefresh), 864000 + CLOCK_SKEW_MARGIN_SECONDS);
});
