/**
 * Password policy after NIST SP 800-63B: length 8 (PASSWORD_MIN_LENGTH) to 256, no composition rules,
 * and refusal of common or context-guessable passwords. zxcvbn-ts scores guessability against its
 * common-password and diceware lists, keyboard patterns, dates, l33t variants and the user's own
 * username/e-mail/name; we refuse scores below 2 (fewer than ~10^8 guesses), which rejects
 * "password123" or "alice2024" but not passphrases. The scoring runs in a worker thread (see below).
 */
import { Worker } from 'node:worker_threads';
import type { Config } from '../config.ts';
import type { FieldError } from '../errors.ts';
import type { StrengthRequest, StrengthResponse } from './password-strength-worker.ts';
import { normalizePassword } from '../crypto/password.ts';

/**
 * The scorer lives in a worker thread started on first use and ended after 10 s without checks
 * (it holds ~55 MB while it lives; starting it again costs ~0.3 s of CPU, paid by the next sign-up):
 * sign-ups, resets and changes are rare next to logins, so the dictionaries need not stay resident,
 * and a check never blocks the event loop.
 */
/** A running scorer and the checks sent to it. */
interface RunningWorker {
  worker: Worker;
  pending: Map<number, { resolve: (r: StrengthResponse) => void; reject: (e: Error) => void }>;
}

class StrengthChecker {
  /** The running worker and the checks sent to it (each worker has its own: see #start). */
  #current: RunningWorker | undefined;
  #nextId = 1;
  #idleTimer: NodeJS.Timeout | undefined;
  static readonly IDLE_MS = 10_000;

  #start(): RunningWorker {
    // A small young generation: the worker's work is CPU, not allocation, and its default (16 MB
    // semi-spaces) adds ~17 MB of resident memory while it lives (issue 7: peak RSS ≤ 150 MB).
    const worker = new Worker(workerEntry(), { resourceLimits: { maxYoungGenerationSizeMb: 2 } });
    // Its own checks only: a worker ended for idling exits a moment after the next check has
    // started another one, and failing every pending check then answered that sign-up 500.
    const pending: RunningWorker['pending'] = new Map();
    const current: RunningWorker = { worker, pending };
    worker.on('message', (r: StrengthResponse) => {
      pending.get(r.id)?.resolve(r);
      pending.delete(r.id);
    });
    const fail = (e: Error) => {
      for (const p of pending.values()) p.reject(e);
      pending.clear();
      if (this.#current === current) this.#current = undefined;
    };
    worker.on('error', fail);
    worker.on('exit', () => fail(new Error('password strength worker exited')));
    // After the listeners: adding a 'message' listener refs the worker's port again, and a ref'd
    // idle worker kept every process (each test file) alive for IDLE_MS after its last check.
    worker.unref();
    return current;
  }

  /** zxcvbn's score and warning for `password`. */
  check(password: string, userInputs: string[]): Promise<StrengthResponse> {
    this.#current ??= this.#start();
    const { worker, pending } = this.#current;
    clearTimeout(this.#idleTimer);
    const id = this.#nextId++;
    return new Promise<StrengthResponse>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, password, userInputs } satisfies StrengthRequest);
    }).finally(() => {
      if (this.#current?.pending.size === 0) {
        this.#idleTimer = setTimeout(() => void this.close(), StrengthChecker.IDLE_MS);
        this.#idleTimer.unref();
      }
    });
  }

  /** Ends the worker (it starts again on the next check). */
  async close(): Promise<void> {
    clearTimeout(this.#idleTimer);
    const current = this.#current;
    this.#current = undefined;
    if (current) await current.worker.terminate();
  }
}

/**
 * The worker's entry: the built .js file; or, when running from TypeScript under tsx, a tiny ESM
 * bootstrap that registers tsx in the worker (Node 20 does not carry --import hooks into workers).
 */
function workerEntry(): URL {
  if (!import.meta.url.endsWith('.ts')) return new URL('./password-strength-worker.js', import.meta.url);
  const source = new URL('./password-strength-worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `const { register } = await import(${JSON.stringify(tsx)}); register(); await import(${JSON.stringify(source)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}

const strength = new StrengthChecker();

/** Ends the password-strength worker, if running (graceful shutdown; tests). */
export function closePasswordChecker(): Promise<void> {
  return strength.close();
}

export const PASSWORD_MAX_LENGTH = 256;
/** zxcvbn's cost grows with length; a long password's strength is settled by its first 100 characters. */
const SCORED_PREFIX = 100;

/** Context words a password must not be built from. */
export interface PasswordContext {
  username?: string;
  email?: string;
  fullName?: string | null;
}

/** Field errors for `password` under the policy (empty when acceptable). `field` names the input. */
export async function checkPassword(config: Config, rawPassword: string, context: PasswordContext, field = 'password1'): Promise<FieldError[]> {
  // Judge what is stored: the NFKC form (a ligature "ﬃ" is three letters, as it is once hashed).
  const password = normalizePassword(rawPassword);
  const length = [...password].length;
  if (length < config.passwordMinLength) {
    return [{ field, message: `Password must be at least ${config.passwordMinLength} characters long.` }];
  }
  if (length > PASSWORD_MAX_LENGTH) return [{ field, message: `Password must be at most ${PASSWORD_MAX_LENGTH} characters long.` }];
  const inputs = [config.productName, 'twofold'];
  if (context.username) inputs.push(context.username);
  if (context.email) inputs.push(context.email, context.email.split('@')[0] ?? '');
  if (context.fullName) inputs.push(...context.fullName.split(/\s+/));
  const lowered = password.toLowerCase();
  for (const word of inputs) {
    if (word.length >= 3 && lowered === word.toLowerCase()) {
      return [{ field, message: 'Password must not be your username, e-mail address or name.' }];
    }
  }
  const result = await strength.check(password.slice(0, SCORED_PREFIX), inputs.filter(Boolean));
  if (result.score < 2) {
    const why = result.warning ? ` ${result.warning}` : '';
    return [{ field, message: `Password is too common or easy to guess.${why}`.trim() }];
  }
  return [];
}
