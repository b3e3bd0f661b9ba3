/**
 * Values no handler or query should ever see: strings with a NUL character or a lone UTF-16 surrogate
 * (PostgreSQL refuses both in text and jsonb) and JSON nested deeper than any field of the contract.
 * (Numbers a double cannot hold are refused by the JSON body parser: http/body-encoding.ts.)
 * The HTTP input guard checks bodies, queries and paths with it; the cursor decoder checks what a
 * base64url cursor carries, which the guard cannot see.
 */
/** Deeper than the contract's deepest body (a sign-up `profile` with a few levels) and far below any stack limit. */
export const MAX_JSON_DEPTH = 32;

/** String.prototype.isWellFormed (ES2024, in Node 20; the compiler's lib is older). */
type WellFormed = { isWellFormed(): boolean };

function badString(s: string): boolean {
  // `isWellFormed` (Node 20) finds lone surrogates in one native pass.
  return s.includes('\u0000') || !(s as unknown as WellFormed).isWellFormed();
}

/**
 * The first problem in `value`, or undefined. Iterative, so depth itself cannot overflow the stack.
 * `maxDepth`: Infinity checks only the strings (values an engine has already parsed and nests as it likes).
 */
export function findBadInput(value: unknown, maxDepth: number = MAX_JSON_DEPTH): string | undefined {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v === 'string') {
      if (badString(v)) return 'contains a NUL character or an unpaired UTF-16 surrogate';
    } else if (v !== null && typeof v === 'object') {
      if (depth >= maxDepth) return `is nested deeper than ${maxDepth} levels`;
      for (const [k, child] of Object.entries(v)) {
        if (badString(k)) return 'contains a NUL character or an unpaired UTF-16 surrogate';
        stack.push([child, depth + 1]);
      }
    }
  }
  return undefined;
}
