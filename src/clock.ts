/** Time comes from a Clock passed in deps, so tests freeze or move it instead of sleeping. */
export type Clock = () => Date;

/** The real clock. */
export const systemClock: Clock = () => new Date();
