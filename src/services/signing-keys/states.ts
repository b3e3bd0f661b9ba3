/**
 * A signing key's state, derived from timestamps alone so that every instance reading the same rows
 * agrees at the same moment, without anyone flipping a flag:
 * - `current`: the latest key whose `activates_at` has passed (only it signs). If none has (a clock
 *   behind the one that made the first key), the earliest key, so there is always one.
 * - `next`: activates later; served in the JWKS ahead of time so verifiers caching it know it first.
 * - `previous`: replaced, but tokens it signed may still be alive: served until its successor's
 *   activation plus the longest token lifetime, then `retired` (no longer served nor accepted).
 */

export type KeyState = 'next' | 'current' | 'previous' | 'retired';

/** What the derivation needs of a key. */
export interface KeyTimes {
  kid: string;
  seq: number;
  activates_at: Date;
}

/** A key with its state at one moment; `retires_at` is set once a successor exists. */
export interface KeyStatus<K extends KeyTimes = KeyTimes> {
  key: K;
  state: KeyState;
  retires_at: Date | undefined;
}

/** The state of every key at `now`, in activation order; `lifetimeSeconds` is the longest token lifetime. */
export function keyStates<K extends KeyTimes>(keys: readonly K[], now: Date, lifetimeSeconds: number): KeyStatus<K>[] {
  const sorted = [...keys].sort((a, b) => a.activates_at.getTime() - b.activates_at.getTime() || a.seq - b.seq);
  let current = 0;
  sorted.forEach((k, i) => {
    if (k.activates_at.getTime() <= now.getTime()) current = i;
  });
  return sorted.map((key, i) => {
    const successor = sorted[i + 1];
    const retires_at = successor ? new Date(successor.activates_at.getTime() + lifetimeSeconds * 1000) : undefined;
    let state: KeyState;
    if (i > current) state = 'next';
    else if (i === current) state = 'current';
    else state = retires_at!.getTime() > now.getTime() ? 'previous' : 'retired';
    return { key, state, retires_at };
  });
}
