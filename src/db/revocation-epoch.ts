/**
 * A process-wide counter bumped whenever this process revokes sessions or deactivates a user. The
 * short-lived session-check cache ignores entries from an older epoch, so a revocation made here
 * takes effect on this instance at once; other instances see it when their entries expire (< 1 s).
 */
let epoch = 0;

/** Marks that sessions may have been revoked. */
export function bumpRevocationEpoch(): void {
  epoch += 1;
}

/** The current epoch. */
export function revocationEpoch(): number {
  return epoch;
}
