/** Test helpers for second factors: verified addresses, mailed codes, MFA challenges, e-mail factor set-up. */
import type { LightMyRequestResponse } from 'fastify';
import { markEmailVerifiedOnce } from '../../src/db/repositories/users.ts';
import type { MailKind, MailMessage } from '../../src/mail/types.ts';
import { bearer, login, type TestApp, type TestUser } from './app.ts';

/** Marks the user's address verified directly in the database (verification itself is tested elsewhere). */
export async function verifyEmail(t: TestApp, user: TestUser): Promise<void> {
  await markEmailVerifiedOnce(t.deps.db, user.uuid, user.email, t.clock(), false);
}

/** Delivers queued mail and returns the captured mails of `kind` sent to `to`, oldest first. */
export async function mailsOf(t: TestApp, kind: MailKind, to: string): Promise<MailMessage[]> {
  return (await t.deliverMail()).filter((m) => m.kind === kind && m.to === to);
}

/** The 6-digit code of a code mail (the text version shows it alone on an indented line). */
export function codeOf(mail: MailMessage): string {
  const m = /^\s{4}(\d{6})\s*$/m.exec(mail.text);
  if (!m?.[1]) throw new Error(`no code in mail ${mail.kind}`);
  return m[1];
}

/** The code of the newest mail of `kind` to `to`. */
export async function lastCode(t: TestApp, kind: 'email_otp_enable' | 'email_otp_login', to: string): Promise<string> {
  const mails = await mailsOf(t, kind, to);
  const last = mails.at(-1);
  if (!last) throw new Error(`no ${kind} mail to ${to}`);
  return codeOf(last);
}

/** A different, well-formed 6-digit code. */
export function wrongCode(code: string): string {
  return String((Number(code) + 1) % 1_000_000).padStart(6, '0');
}

/** POST with a Bearer token. */
export function post(t: TestApp, url: string, token: string | undefined, payload?: unknown, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'POST', url, headers: { ...(token ? bearer(token) : {}), ...headers }, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) });
}

/** DELETE with a Bearer token. */
export function del(t: TestApp, url: string, token: string, payload?: unknown): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'DELETE', url, headers: bearer(token), ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) });
}

/** GET with a Bearer token. */
export function get(t: TestApp, url: string, token: string): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'GET', url, headers: bearer(token) });
}

/** Logs in with the password only and expects 403 mfa_required; returns the challenge answer. */
export async function mfaChallenge(t: TestApp, user: TestUser): Promise<{ mfa_token: string; mfa_methods: string[]; mfa_expires_in: number }> {
  const res = await login(t.app, { username: user.username, password: user.password });
  if (res.statusCode !== 403 || res.json().code !== 'mfa_required') throw new Error(`expected mfa_required: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** POST /login/mfa. */
export function loginMfa(t: TestApp, mfaToken: string, method: string, code: string): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa', payload: { mfa_token: mfaToken, method, code } });
}

/** POST /login/mfa/email-code. */
export function requestLoginCode(t: TestApp, mfaToken: string): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa/email-code', payload: { mfa_token: mfaToken } });
}

/**
 * Turns e-mailed codes on for a user through the API (verify, enable, confirm) with `token`;
 * returns the backup codes of the confirmation.
 */
export async function enableEmailOtp(t: TestApp, user: TestUser, token: string): Promise<string[]> {
  await verifyEmail(t, user);
  const enable = await post(t, '/api/v1/auth-email-otp/enable', token);
  if (enable.statusCode !== 202) throw new Error(`enable failed: ${enable.statusCode} ${enable.body}`);
  const code = await lastCode(t, 'email_otp_enable', user.email);
  const confirm = await post(t, '/api/v1/auth-email-otp/confirm', token, { code });
  if (confirm.statusCode !== 200) throw new Error(`confirm failed: ${confirm.statusCode} ${confirm.body}`);
  return confirm.json().backup_codes;
}

/** Logs in through an e-mailed code (two steps); returns the aal2 tokens. */
export async function loginWithEmailCode(t: TestApp, user: TestUser): Promise<{ access_token: string; refresh_token: string }> {
  const { mfa_token } = await mfaChallenge(t, user);
  const sent = await requestLoginCode(t, mfa_token);
  if (sent.statusCode !== 202) throw new Error(`email-code failed: ${sent.statusCode} ${sent.body}`);
  const res = await loginMfa(t, mfa_token, 'email', await lastCode(t, 'email_otp_login', user.email));
  if (res.statusCode !== 200) throw new Error(`mfa login failed: ${res.statusCode} ${res.body}`);
  return res.json();
}
