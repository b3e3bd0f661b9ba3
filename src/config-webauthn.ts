/**
 * The passkey (WebAuthn) relying party, derived from PUBLIC_URL and WEBAUTHN_RP_ID. Browsers refuse
 * an IP address as RP ID and require the RP ID to be the page's host or a registrable suffix of it,
 * so a setting that cannot work stops start-up with a message naming it, instead of failing later
 * in every person's browser with an opaque SecurityError.
 */
import { isIP } from 'node:net';
import { ConfigError, isLoopbackHost } from './config.ts';

/** The relying party passkeys are bound to. */
export interface WebauthnConfig {
  /** Relying-party ID: a host name (credentials are scoped to it and its subdomains). */
  readonly rpId: string;
  /** Name shown by the browser's passkey prompt. */
  readonly rpName: string;
  /** The one origin whose pages may use the passkeys (`clientDataJSON.origin` must equal it). */
  readonly origin: string;
  /** Seconds a registration or login challenge lives (the contract: 5 minutes). */
  readonly challengeTtlSeconds: number;
}

/**
 * Derives the relying party. A loopback IP in PUBLIC_URL (http://127.0.0.1:8000) gets RP ID
 * `localhost` and origin http://localhost:PORT — the same service under a name browsers accept, and
 * the address start-up tells the person to open. Any other IP address, or a WEBAUTHN_RP_ID that is
 * not the host or a suffix of it, is a ConfigError.
 */
export function webauthnConfig(publicOrigin: string, rpIdSetting: string | undefined, rpName: string): WebauthnConfig {
  const url = new URL(publicOrigin);
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  let origin = publicOrigin;
  let effectiveHost = host;
  if (isIP(host) && isLoopbackHost(host)) {
    // 127.0.0.1 / ::1: browsers allow passkeys on http://localhost (a secure context), never on an IP.
    url.hostname = 'localhost';
    origin = url.origin;
    effectiveHost = 'localhost';
  } else if (isIP(host)) {
    throw new ConfigError(
      `PUBLIC_URL's host ${host} is an IP address, and browsers refuse passkeys on an IP address: give PUBLIC_URL a host name (e.g. https://auth.example.com), since WEBAUTHN_RP_ID must be that host or a suffix of it`,
    );
  }
  const rpId = (rpIdSetting ?? effectiveHost).trim().toLowerCase().replace(/\.$/, '');
  if (rpIdSetting !== undefined) {
    if (isIP(rpId.replace(/^\[|\]$/g, ''))) throw new ConfigError(`WEBAUTHN_RP_ID must be a host name, not an IP address (browsers refuse it), got "${rpIdSetting}"`);
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(rpId)) {
      throw new ConfigError(`WEBAUTHN_RP_ID must be a bare host name (no scheme, port or path), got "${rpIdSetting}"`);
    }
    if (rpId !== effectiveHost && !effectiveHost.endsWith(`.${rpId}`)) {
      throw new ConfigError(`WEBAUTHN_RP_ID "${rpId}" must be PUBLIC_URL's host (${effectiveHost}) or a domain it belongs to (browsers refuse any other)`);
    }
    // A bare top-level name ("com") would be a public suffix: never a valid RP ID, except localhost.
    if (!rpId.includes('.') && rpId !== 'localhost' && rpId !== effectiveHost) {
      throw new ConfigError(`WEBAUTHN_RP_ID "${rpId}" is a top-level name; use a registrable domain such as example.com`);
    }
  }
  return { rpId, rpName, origin, challengeTtlSeconds: 300 };
}
