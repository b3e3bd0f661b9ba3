/** Reads and validates OIDC_CLIENTS_FILE at start-up; a bad entry stops the start with the field named. */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.ts';
import { ClientMetadataError, validateClientInput, type ClientInput } from './client-metadata.ts';

/** Parses the file's text (a JSON array of client metadata). `source` prefixes every message; `httpsOnly`: PUBLIC_URL is https. */
export function parseClientsFile(text: string, source = 'OIDC_CLIENTS_FILE', httpsOnly = false): ClientInput[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${source}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (!Array.isArray(raw)) throw new ConfigError(`${source}: must be a JSON array of client objects`);
  const seen = new Set<string>();
  return raw.map((entry, i) => {
    let client: ClientInput;
    try {
      client = validateClientInput(entry, true, httpsOnly);
    } catch (e) {
      if (e instanceof ClientMetadataError) throw new ConfigError(`${source}: [${i}].${e.message}`, { cause: e });
      throw e;
    }
    if (seen.has(client.client_id)) throw new ConfigError(`${source}: [${i}].client_id "${client.client_id}" appears twice`);
    seen.add(client.client_id);
    return client;
  });
}

/** Reads `file` (none configured: no file clients); `httpsOnly`: PUBLIC_URL is https. */
export function loadClientsFile(file: string | undefined, httpsOnly = false): ClientInput[] {
  if (!file) return [];
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`OIDC_CLIENTS_FILE: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
  }
  return parseClientsFile(text, 'OIDC_CLIENTS_FILE', httpsOnly);
}
