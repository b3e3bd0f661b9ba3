/**
 * Password hashing with argon2id (@node-rs/argon2: prebuilt, runs on the libuv thread pool so the
 * event loop never waits for the ~10 ms hash). Parameters default to OWASP's m=19 MiB, t=2, p=1.
 */
import { availableParallelism } from 'node:os';
import { hash, verify, type Algorithm } from '@node-rs/argon2';

/** `Algorithm.Argon2id`; the package exports a const enum, which isolated modules cannot read. */
const ARGON2ID = 2 as Algorithm;

export interface PasswordHashParams {
  memoryKib: number;
  iterations: number;
  parallelism: number;
}

/**
 * At most `limit` tasks at once; the rest wait in order. Written here because it is eight lines and
 * the hasher is its only user.
 */
class Gate {
  #running = 0;
  readonly #queue: Array<() => void> = [];
  constructor(readonly limit: number) {}
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.limit) await new Promise<void>((resolve) => this.#queue.push(resolve));
    this.#running++;
    try {
      return await task();
    } finally {
      this.#running--;
      this.#queue.shift()?.();
    }
  }
}

/**
 * NFKC, as NIST SP 800-63B-4 §3.1.1.2 asks: the same passphrase typed on another system (composed vs
 * decomposed accents, full-width forms, ligatures) must match. Applied to every password hashed or checked.
 */
export function normalizePassword(password: string): string {
  return password.normalize('NFKC');
}

/** Injectable for tests: waits `ms` milliseconds. */
export type Sleep = (ms: number) => Promise<void>;

const realSleep: Sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Hashes and verifies passwords; tells when a stored hash should be upgraded. */
export class PasswordHasher {
  readonly #params: PasswordHashParams;
  readonly #sleep: Sleep;
  #dummy: Promise<string> | undefined;
  /** Running estimate of one verification with the current parameters (ms of argon2 work, no queueing). */
  #currentVerifyMs: number | undefined;
  // Each argon2id run holds memoryKib of RAM (19 MiB by default) while it runs. Running more at once
  // than there are cores gains no throughput (p=1 is single-threaded) but multiplies memory and crowds
  // RSA signing and other work off the libuv pool, so hashes queue here, one per core. (One more, to
  // start the next hash sooner, ran beside the others on the pool's spare thread: 19 MiB more at the
  // peak and no throughput in the bench; CHANGELOG, issue 7 item 17.)
  readonly #gate = new Gate(availableParallelism());

  constructor(params: PasswordHashParams, options: { sleep?: Sleep } = {}) {
    this.#params = params;
    this.#sleep = options.sleep ?? realSleep;
  }

  /** An argon2id PHC string for `password`. */
  hash(password: string): Promise<string> {
    return this.#gate.run(() =>
      hash(normalizePassword(password), {
        algorithm: ARGON2ID,
        memoryCost: this.#params.memoryKib,
        timeCost: this.#params.iterations,
        parallelism: this.#params.parallelism,
      }),
    );
  }

  /** True when `password` matches `phc` (normalised, or as typed for older hashes). A malformed stored hash counts as a mismatch. */
  async verify(phc: string, password: string): Promise<boolean> {
    return (await this.check(phc, password)) !== false;
  }

  /**
   * `current` when the NFKC form matches; `legacy` when only the form as typed does — a hash made before
   * passwords were normalised, which the caller should replace by `hash(password)`; false otherwise.
   */
  async check(phc: string, password: string): Promise<false | 'current' | 'legacy'> {
    const normalized = normalizePassword(password);
    const outdated = this.needsRehash(phc);
    const work = { ms: 0, runs: 0 };
    if (await this.#verify(phc, normalized, outdated ? work : undefined)) return 'current';
    if (normalized !== password && (await this.#verify(phc, password, outdated ? work : undefined))) return 'legacy';
    if (outdated) await this.#padToCurrentCost(work);
    return false;
  }

  /**
   * A wrong password for a hash made with other (cheaper) parameters than today's takes as long as
   * one checked at today's cost, as an unknown user's dummy check does: otherwise, after the
   * parameters were raised (`twofold hash-calibrate`), a failed login told existing accounts (not
   * yet rehashed: they rehash at their next successful login) from unknown names by its time. The
   * difference is waited, not computed: the estimate of today's cost comes from the checks made with
   * today's parameters. Hashes made with dearer parameters than today's are not shortened: their
   * owners chose nothing, and an operator lowering the cost accepts that for a while.
   */
  async #padToCurrentCost(work: { ms: number; runs: number }): Promise<void> {
    if (this.#currentVerifyMs === undefined) await this.verifyDummy('twofold-estimate-of-the-current-cost');
    const missing = (this.#currentVerifyMs ?? 0) * work.runs - work.ms;
    if (missing > 1) await this.#sleep(Math.round(missing));
  }

  async #verify(phc: string, password: string, outdatedWork?: { ms: number; runs: number }): Promise<boolean> {
    try {
      return await this.#gate.run(async () => {
        const started = performance.now();
        try {
          return await verify(phc, password);
        } finally {
          const ms = performance.now() - started;
          if (outdatedWork) {
            outdatedWork.ms += ms;
            outdatedWork.runs += 1;
          } else if (!this.needsRehash(phc)) {
            // Smoothed: one run on a busy machine must not set the floor alone.
            this.#currentVerifyMs = this.#currentVerifyMs === undefined ? ms : this.#currentVerifyMs * 0.9 + ms * 0.1;
          }
        }
      });
    } catch {
      return false;
    }
  }

  /**
   * Spends the same time as a real verification, for unknown users: without it, "no such user"
   * answers faster than "wrong password" and usernames could be enumerated by timing.
   */
  async verifyDummy(password: string): Promise<false> {
    this.#dummy ??= this.hash('twofold-dummy-password-for-timing');
    await this.verify(await this.#dummy, password);
    return false;
  }

  /** True when `phc` is not argon2id with the current parameters (rehash after a successful login). */
  needsRehash(phc: string): boolean {
    const m = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(phc);
    if (!m) return true;
    return Number(m[1]) !== this.#params.memoryKib || Number(m[2]) !== this.#params.iterations || Number(m[3]) !== this.#params.parallelism;
  }
}
