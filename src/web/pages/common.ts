/** What every page template receives from the routes. */
import type { Config } from '../../config.ts';
import { returnToOrigins, safeReturnTo } from '../return-to.ts';

/** Per-request input of a page template. */
export interface PageContext {
  config: Config;
  /** The `return_to` after validation, or undefined when absent or not allowed. */
  returnTo: string | undefined;
}

/** Trusted origins plus this service under its other loopback names (a page opened as 127.0.0.1 while PUBLIC_URL says localhost). */
function sameServiceOrigins(config: Config): string[] {
  return [...config.loopbackAliases, ...config.trustedOrigins];
}

/** Builds the page context, validating `return_to` against the configured origins. */
export function pageContext(config: Config, rawReturnTo: unknown): PageContext {
  return { config, returnTo: safeReturnTo(rawReturnTo, config.publicOrigin, sameServiceOrigins(config)) };
}

/** The `data-*` attributes the page scripts read to re-check and follow `return_to`. */
export function returnToData(ctx: PageContext): Record<string, string> {
  return {
    'return-to': ctx.returnTo ?? '',
    'allowed-origins': returnToOrigins(ctx.config.publicOrigin, sameServiceOrigins(ctx.config)).join(' '),
  };
}

/** `path` with the validated `return_to` carried along, for links between the login and sign-up pages. */
export function withReturnTo(path: string, ctx: PageContext): string {
  return ctx.returnTo ? `${path}?return_to=${encodeURIComponent(ctx.returnTo)}` : path;
}
