/**
 * Reads a service's environment from compose.yaml as `docker compose` would hand it to the container:
 * `${VAR}`, `${VAR:-default}` and `${VAR:?message}` are interpolated from `vars` (a missing required
 * one throws with compose's message). Used by scripts/container-smoke-run.ts and the compose test.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

/** The parts of a compose file the checks read. */
export interface ComposeFile {
  services: Record<string, {
    image?: string;
    build?: unknown;
    environment?: Record<string, string | number | boolean | null> | string[];
    depends_on?: Record<string, { condition?: string }> | string[];
    healthcheck?: { test?: string[] | string };
    volumes?: string[];
    ports?: string[];
  }>;
  volumes?: Record<string, unknown>;
}

/** Parses compose.yaml (throws on invalid YAML). */
export function readCompose(file: string): ComposeFile {
  return parse(readFileSync(file, 'utf8')) as ComposeFile;
}

/** Interpolates compose's `${…}` forms in `value`. */
export function interpolate(value: string, vars: Readonly<Record<string, string | undefined>>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (_m, name: string, op: string | undefined, arg: string) => {
    const v = vars[name];
    const empty = v === undefined || (op?.startsWith(':') && v === '');
    if (op?.endsWith('?')) {
      if (empty) throw new Error(`compose: ${name}: ${arg || 'required'}`);
      return v!;
    }
    if (op?.endsWith('-')) return empty ? arg : v!;
    return v ?? '';
  });
}

/** The environment of `service`, interpolated from `vars`. */
export function serviceEnvironment(compose: ComposeFile, service: string, vars: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const env = compose.services[service]?.environment ?? {};
  const pairs: Array<[string, string]> = Array.isArray(env)
    ? env.map((line) => {
        const i = line.indexOf('=');
        return [line.slice(0, i), line.slice(i + 1)];
      })
    : Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)]);
  return Object.fromEntries(pairs.map(([k, v]) => [k, interpolate(v, vars)]));
}
