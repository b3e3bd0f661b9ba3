/** `twofold keys list | rotate`: the signing keys, as GET /api/v1/admin/keys and POST …/rotate show them. */
import type { Deps } from '../deps.ts';
import { auditRotation, listKeys, rotateSigningKey, type SigningKeyView } from '../services/signing-keys/rotate.ts';
import { CLI_CONTEXT } from './users.ts';

function table(keys: SigningKeyView[]): string[] {
  const rows = [['KID', 'STATE', 'CREATED', 'ACTIVATES', 'RETIRES'], ...keys.map((k) => [k.kid, k.state, k.created_at, k.activates_at, k.retires_at ?? '-'])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
}

/** Prints the served keys, newest first (`json`: one JSON document `{keys: [...]}`). */
export async function listKeysCommand(deps: Deps, json: boolean, out: (line: string) => void): Promise<void> {
  const keys = await listKeys(deps);
  if (json) out(JSON.stringify({ keys }, null, 2));
  else for (const line of table(keys)) out(line);
}

/** Makes a new key in state `next`; running servers read it within 30 s and it signs from its activation on. */
export async function rotateKeysCommand(deps: Deps, json: boolean, out: (line: string) => void): Promise<void> {
  const key = await rotateSigningKey(deps, { onCreated: auditRotation(CLI_CONTEXT, deps.clock) });
  if (json) out(JSON.stringify(key, null, 2));
  else out(`new signing key ${key.kid} in state next; it becomes current at ${key.activates_at} (JWT_KEY_ACTIVATION_DELAY); nobody is logged out`);
}
