/**
 * Password policy after NIST SP 800-63B: length 8 (PASSWORD_MIN_LENGTH) to 256, no composition rules,
 * and refusal of common or context-guessable passwords. zxcvbn-ts scores guessability against its
 * common-password and diceware lists, keyboard patterns, dates, l33t variants and the user's own
 * username/e-mail/name; we refuse scores below 2 (fewer than ~10^8 guesses), which rejects
 * "password123" or "alice2024" but not passphrases. The English dictionary package (names, Wikipedia
 * words) is left out on purpose: it costs ~64 MB of resident memory and changed no verdict we tried.
 */
import type { Config } from '../config.ts';
import type { FieldError } from '../errors.ts';

type Checker = { checkAsync(password: string, userInputs: string[]): Promise<{ score: number; feedback: { warning: string | null } }> };
let checker: Promise<Checker> | undefined;

/** Loads the dictionaries once, on first use (~100 ms and ~20 MB). */
function getChecker(): Promise<Checker> {
  checker ??= (async () => {
    const [{ ZxcvbnFactory }, common, en] = await Promise.all([
      import('@zxcvbn-ts/core'),
      import('@zxcvbn-ts/language-common'),
      import('@zxcvbn-ts/language-en'),
    ]);
    // English translations only (the feedback messages); not the English dictionary.
    return new ZxcvbnFactory({
      dictionary: { ...common.dictionary },
      graphs: common.adjacencyGraphs,
      translations: en.translations,
    }) as unknown as Checker;
  })();
  return checker;
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
export async function checkPassword(config: Config, password: string, context: PasswordContext, field = 'password1'): Promise<FieldError[]> {
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
  const result = await (await getChecker()).checkAsync(password.slice(0, SCORED_PREFIX), inputs.filter(Boolean));
  if (result.score < 2) {
    const why = result.feedback.warning ? ` ${result.feedback.warning}` : '';
    return [{ field, message: `Password is too common or easy to guess.${why}`.trim() }];
  }
  return [];
}
