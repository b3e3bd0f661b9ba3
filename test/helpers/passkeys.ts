/** Test helpers for passkeys: registration and sign-in through the API with a software authenticator. */
import type { LightMyRequestResponse } from 'fastify';
import type { TestApp } from './app.ts';
import { get, post } from './factors.ts';
import { SoftwareAuthenticator, type CeremonyOverrides } from './webauthn.ts';

/** The origin and RP ID buildTestApp's PUBLIC_URL (http://127.0.0.1:8000) gives passkeys. */
export const TEST_ORIGIN = 'http://localhost:8000';

/** POST /passkeys/registration/options with `token`; the creation options (throws unless 200). */
export async function registrationOptions(t: TestApp, token: string) {
  const res = await post(t, '/api/v1/passkeys/registration/options', token, {});
  if (res.statusCode !== 200) throw new Error(`registration options: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** Runs a whole registration with `authenticator`; returns the verify answer (not checked). */
export async function registerPasskey(t: TestApp, token: string, authenticator: SoftwareAuthenticator, overrides: CeremonyOverrides = {}, name?: string): Promise<LightMyRequestResponse> {
  const options = await registrationOptions(t, token);
  const { response } = authenticator.create(options, overrides);
  return post(t, '/api/v1/passkeys/registration/verify', token, { credential: response, ...(name ? { name } : {}) });
}

/** Registers a passkey and fails unless 201; returns the answer's body. */
export async function addPasskey(t: TestApp, token: string, authenticator = new SoftwareAuthenticator(TEST_ORIGIN), name?: string) {
  const res = await registerPasskey(t, token, authenticator, {}, name);
  if (res.statusCode !== 201) throw new Error(`passkey registration: ${res.statusCode} ${res.body}`);
  return { body: res.json(), authenticator };
}

/** POST /login/passkey/options. */
export function passkeyLoginOptions(t: TestApp, username?: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/passkey/options', payload: username === undefined ? {} : { username }, headers });
}

/** POST /login/passkey with a body. */
export function passkeyLogin(t: TestApp, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/passkey', payload: body, headers });
}

/** Options, then an assertion by `authenticator` (with `overrides`), then the login; returns the login answer. */
export async function signInWithPasskey(t: TestApp, authenticator: SoftwareAuthenticator, overrides: CeremonyOverrides = {}, username?: string): Promise<LightMyRequestResponse> {
  const opts = await passkeyLoginOptions(t, username);
  if (opts.statusCode !== 200) throw new Error(`passkey options: ${opts.statusCode} ${opts.body}`);
  const { challenge_token, options } = opts.json();
  return passkeyLogin(t, { challenge_token, credential: authenticator.get(options, overrides) });
}

/** POST /login/mfa/passkey/options. */
export function mfaPasskeyOptions(t: TestApp, mfaToken: string): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa/passkey/options', payload: { mfa_token: mfaToken } });
}

/** POST /login/mfa with method passkey. */
export function loginMfaPasskey(t: TestApp, mfaToken: string, credential: unknown): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa', payload: { mfa_token: mfaToken, method: 'passkey', credential: credential as Record<string, unknown> } });
}

/** The claims of a JWT (no verification: the tests only read what the service put in). */
export function claims(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8'));
}

/** GET /passkeys with `token`. */
export async function listPasskeys(t: TestApp, token: string) {
  const res = await get(t, '/api/v1/passkeys', token);
  if (res.statusCode !== 200) throw new Error(`list: ${res.statusCode} ${res.body}`);
  return res.json() as Array<{ id: string; name: string; created_at: string; last_used_at: string | null; backed_up: boolean; device_type: string }>;
}
