/**
 * A registration's public key must be a key that can verify signatures. With attestation "none" the
 * library checked only the key's `alg`: coordinates as text, no curve, a point off P-256 or an RSA
 * modulus of 1 registered (201, the first factor's backup codes, the other sessions ended), and every
 * login then asked for a passkey that could never sign. Now 400 invalid_passkey, nothing stored.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { createUser, describeWithApp, loginTokens, type TestApp } from '../helpers/app.ts';
import { post } from '../helpers/factors.ts';
import { registrationOptions, TEST_ORIGIN } from '../helpers/passkeys.ts';
import { cbor } from '../helpers/webauthn.ts';

type Cose = Parameters<typeof cbor>[0];
const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64url');
const jwkBytes = (s: string | undefined) => Buffer.from(s ?? '', 'base64url');

function p256(): Cose {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
  return new Map<number, Cose>([[1, 2], [3, -7], [-1, 1], [-2, jwkBytes(jwk.x)], [-3, jwkBytes(jwk.y)]]);
}

/** A valid point, but on P-384: ES256 is P-256 only. */
function p384(): Cose {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'jwk' });
  return new Map<number, Cose>([[1, 2], [3, -7], [-1, 2], [-2, jwkBytes(jwk.x)], [-3, jwkBytes(jwk.y)]]);
}

function rsa(bits: number): Cose {
  const jwk = generateKeyPairSync('rsa', { modulusLength: bits }).publicKey.export({ format: 'jwk' });
  return new Map<number, Cose>([[1, 3], [3, -257], [-1, jwkBytes(jwk.n)], [-2, jwkBytes(jwk.e)]]);
}

/** Registers, for a fresh user, a credential whose authenticator data carries `cose` (attestation "none"). */
async function register(app: TestApp, cose: Cose) {
  const user = await createUser(app.app);
  const token = (await loginTokens(app.app, user)).access_token;
  const options = await registrationOptions(app, token);
  const id = randomBytes(16);
  const idLength = Buffer.alloc(2);
  idLength.writeUInt16BE(id.length);
  const rpIdHash = createHash('sha256').update(options.rp.id).digest();
  // Flags 0x45: user present, user verified, attested credential data.
  const authData = Buffer.concat([rpIdHash, Buffer.from([0x45]), Buffer.alloc(4), Buffer.alloc(16), idLength, id, cbor(cose)]);
  const attestationObject = b64(cbor(new Map<string, Cose>([['fmt', 'none'], ['attStmt', new Map()], ['authData', authData]])));
  const clientDataJSON = b64(JSON.stringify({ type: 'webauthn.create', challenge: options.challenge, origin: TEST_ORIGIN }));
  const res = await post(app, '/api/v1/passkeys/registration/verify', token, { credential: { id: b64(id), rawId: b64(id), type: 'public-key', response: { clientDataJSON, attestationObject } } });
  const stored = await app.deps.db.query('SELECT 1 FROM passkeys WHERE user_id = $1', [user.uuid]);
  return { res, stored: stored.rows.length };
}

describeWithApp('Passkeys: the public key registered', (suite) => {
  test('a key that cannot verify signatures is 400 invalid_passkey and nothing is stored; real P-256 and RSA-2048 keys register', async (t) => {
    const app = await suite.build(t);
    const unusable: Record<string, Cose> = {
      'x and y as text': new Map<number, Cose>([[1, 2], [3, -7], [-1, 1], [-2, 'x'], [-3, 'y']]),
      'kty as text, no curve, no point': new Map<number, Cose>([[1, 'EC2'], [3, -7]]),
      'a point off P-256': new Map<number, Cose>([[1, 2], [3, -7], [-1, 1], [-2, randomBytes(32)], [-3, randomBytes(32)]]),
      'ES256 with a real P-384 key (crv 2)': p384(),
      'RSA with n = 1, e = 3': new Map<number, Cose>([[1, 3], [3, -257], [-1, Buffer.from([1])], [-2, Buffer.from([3])]]),
      'RSA of 1,024 bits': rsa(1024),
    };
    for (const [what, cose] of Object.entries(unusable)) {
      const { res, stored } = await register(app, cose);
      assert.equal(res.statusCode, 400, `${what}: ${res.body}`);
      assert.equal(res.json().code, 'invalid_passkey', what);
      assert.equal(stored, 0, what);
    }
    for (const [what, cose] of Object.entries({ 'P-256': p256(), 'RSA-2048': rsa(2048) })) {
      const { res, stored } = await register(app, cose);
      assert.equal(res.statusCode, 201, `${what}: ${res.body}`);
      assert.equal(stored, 1, what);
    }
  });
});
