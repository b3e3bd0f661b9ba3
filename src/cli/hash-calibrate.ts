/**
 * `twofold hash-calibrate`: the argon2id settings that take about a target time per hash on this
 * machine. Memory stays at the chosen amount (memory is what makes argon2 costly for attackers'
 * hardware; OWASP's floor is 19 MiB), iterations grow until one hash takes the target; if even one
 * iteration is too slow, memory is halved down to the floor.
 */
import { PasswordHasher } from '../crypto/password.ts';

export interface CalibrateOptions {
  targetMs: number;
  memoryKib: number;
  parallelism: number;
  /** Floor for memory when one iteration is already too slow. */
  minMemoryKib: number;
}

/** The median time of `runs` hashes with these settings, in milliseconds. */
async function measure(memoryKib: number, iterations: number, parallelism: number, runs = 3): Promise<number> {
  const hasher = new PasswordHasher({ memoryKib, iterations, parallelism });
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await hasher.hash('calibration password');
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
}

/** Finds the settings and prints them as environment lines. */
export async function hashCalibrate(o: CalibrateOptions, out: (line: string) => void): Promise<void> {
  let memoryKib = o.memoryKib;
  let iterations = 1;
  let ms = await measure(memoryKib, iterations, o.parallelism);
  while (ms > o.targetMs && memoryKib / 2 >= o.minMemoryKib) {
    memoryKib = Math.floor(memoryKib / 2);
    ms = await measure(memoryKib, iterations, o.parallelism);
  }
  // Each iteration costs about the same, so the first estimate is a division; then step to the target.
  iterations = Math.max(1, Math.min(100, Math.floor(o.targetMs / Math.max(ms, 0.01))));
  ms = await measure(memoryKib, iterations, o.parallelism);
  while (ms < o.targetMs && iterations < 100) {
    iterations++;
    ms = await measure(memoryKib, iterations, o.parallelism);
  }
  while (ms > o.targetMs * 1.25 && iterations > 1) {
    iterations--;
    ms = await measure(memoryKib, iterations, o.parallelism);
  }
  out(`# argon2id taking about ${Math.round(ms)} ms per hash on this machine (target ${o.targetMs} ms)`);
  out(`PASSWORD_HASH_MEMORY_KIB=${memoryKib}`);
  out(`PASSWORD_HASH_ITERATIONS=${iterations}`);
  out(`PASSWORD_HASH_PARALLELISM=${o.parallelism}`);
  out('# each login costs this much CPU time: keep it well under your login latency budget, and measure again under load');
}
