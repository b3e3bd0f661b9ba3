/**
 * The `twofold` command line (package.json "bin"; `npx twofold …`). Works against DATABASE_URL, or the
 * embedded database in DATA_DIR while no server holds it. Exit codes: 0 done, 1 failed, 2 bad usage or
 * configuration, 3 the embedded database is in use by a running server.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig, ConfigError, PASSWORD_HASH_BOUNDS, type Config } from '../config.ts';
import { migrate } from '../db/migrate.ts';
import { AppError } from '../errors.ts';
import { CliError, cliDeps, openCliDatabase } from './context.ts';
import { hashCalibrate } from './hash-calibrate.ts';
import { listKeysCommand, rotateKeysCommand } from './keys.ts';
import { adoptTokenHashKeyCommand } from './token-hash-key.ts';
import { createUser, promoteUser, unlockUser } from './users.ts';

export const USAGE = `usage: twofold <command>

  migrate                                   apply pending database migrations
  users create <username> <email> [--role R]... [--verified] [--password-stdin]
                                            create a user (a random password is printed unless
                                            --password-stdin reads one from standard input)
  users promote <username> <role>           grant a role (e.g. the first admin: users promote alice admin)
  users unlock <username>                   clear the user's lockout counters (needs REDIS_URL with PostgreSQL)
  keys list [--json]                        the signing keys: next, current, previous
  keys rotate [--json]                      make a new signing key (state next; current after JWT_KEY_ACTIVATION_DELAY)
  token-hash-key adopt                      make this TOKEN_HASH_KEY the database's (after replacing the key on
                                            purpose: every backup code and pending verification link stops
                                            working, every OpenID Connect session and token ends)
  hash-calibrate [--target-ms 500] [--memory-kib 19456] [--parallelism 1]
                                            argon2id settings taking about the target time per hash here

Settings come from the environment, as for the server: DATABASE_URL (unset: the embedded database in
DATA_DIR, which a running server holds — stop it first), TOTP_ENCRYPTION_KEY, TOKEN_HASH_KEY, REDIS_URL, …`;

type Out = (line: string) => void;

function positiveInt(value: string | undefined, name: string, fallback: number, bounds?: { min: number; max: number }): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new CliError(`--${name} must be a positive whole number`, 2);
  if (bounds && (Number(value) < bounds.min || Number(value) > bounds.max)) throw new CliError(`--${name} must be between ${bounds.min} and ${bounds.max}`, 2);
  return Number(value);
}

/** Runs the command in `argv` (without node and the script); returns the exit code. */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv, out: Out, err: Out, stdin: () => string): Promise<number> {
  try {
    await dispatch(argv, env, out, stdin);
    return 0;
  } catch (e) {
    if (e instanceof CliError) {
      err(`twofold: ${e.message}`);
      return e.exitCode;
    }
    if (e instanceof ConfigError) {
      err(`twofold: configuration error: ${e.message}`);
      return 2;
    }
    if (e instanceof AppError) {
      const fields = e.errors?.map((f) => `${f.field}: ${f.message}`).join('; ');
      err(`twofold: ${e.detail ?? e.code}${fields ? ` (${fields})` : ''} [${e.code}]`);
      return 1;
    }
    if (e instanceof TypeError && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      err(`twofold: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    err(`twofold: ${(e as Error).message ?? String(e)}`);
    return 1;
  }
}

async function dispatch(argv: string[], env: NodeJS.ProcessEnv, out: Out, stdin: () => string): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      role: { type: 'string', multiple: true },
      verified: { type: 'boolean' },
      'password-stdin': { type: 'boolean' },
      json: { type: 'boolean' },
      'target-ms': { type: 'string' },
      'memory-kib': { type: 'string' },
      parallelism: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, sub, ...args] = positionals;
  if (values.help || command === undefined || command === 'help') {
    out(USAGE);
    return;
  }
  if (command === 'hash-calibrate') {
    const config = loadConfig(env);
    await hashCalibrate({
      targetMs: positiveInt(values['target-ms'], 'target-ms', 500),
      // Within the server's own bounds: settings it would refuse at start are not worth printing.
      memoryKib: positiveInt(values['memory-kib'], 'memory-kib', Math.max(config.passwordHash.memoryKib, 19456), PASSWORD_HASH_BOUNDS.memoryKib),
      parallelism: positiveInt(values.parallelism, 'parallelism', config.passwordHash.parallelism, PASSWORD_HASH_BOUNDS.parallelism),
      minMemoryKib: Math.min(19456, positiveInt(values['memory-kib'], 'memory-kib', 19456, PASSWORD_HASH_BOUNDS.memoryKib)),
    }, out);
    return;
  }
  const known: Record<string, number> = { migrate: 0, 'users create': 2, 'users promote': 2, 'users unlock': 1, 'keys list': 0, 'keys rotate': 0, 'token-hash-key adopt': 0 };
  const name = command === 'migrate' ? 'migrate' : `${command} ${sub ?? ''}`;
  const rest = command === 'migrate' ? [sub, ...args].filter((a) => a !== undefined) : args;
  if (!(name in known)) throw new CliError(`unknown command "${[command, sub].filter(Boolean).join(' ')}"\n\n${USAGE}`, 2);
  if (rest.length !== known[name]) throw new CliError(`"${name}" takes ${known[name]} argument(s)\n\n${USAGE}`, 2);

  const config = loadConfig(env);
  const open = await openCliDatabase(config);
  try {
    if (name === 'migrate') {
      const applied = await migrate(open.db);
      out(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
      return;
    }
    // The one command that opens with another key than the recorded one: it records this one.
    const deps = await cliDeps(open, { tokenHashKey: name === 'token-hash-key adopt' ? 'skip' : 'compare' });
    try {
      await run(name, rest as string[], deps, config, values, out, stdin);
    } finally {
      await deps.limiter.close();
    }
  } finally {
    await open.close();
  }
}

async function run(name: string, a: string[], deps: Awaited<ReturnType<typeof cliDeps>>, _config: Config, values: Record<string, unknown>, out: Out, stdin: () => string): Promise<void> {
  switch (name) {
    case 'users create': {
      const password = values['password-stdin'] ? stdin().split(/\r?\n/)[0] : undefined;
      if (values['password-stdin'] && !password) throw new CliError('--password-stdin: standard input held no password', 2);
      await createUser(deps, { username: a[0]!, email: a[1]!, password, roles: (values.role as string[] | undefined) ?? [], verified: Boolean(values.verified) }, out);
      return;
    }
    case 'users promote':
      return promoteUser(deps, a[0]!, a[1]!, out);
    case 'users unlock':
      return unlockUser(deps, a[0]!, out);
    case 'keys list':
      return listKeysCommand(deps, Boolean(values.json), out);
    case 'keys rotate':
      return rotateKeysCommand(deps, Boolean(values.json), out);
    case 'token-hash-key adopt':
      return adoptTokenHashKeyCommand(deps, out);
  }
}

/** Reads all of standard input (for --password-stdin). */
export function readStdin(): string {
  return readFileSync(0, 'utf8');
}
