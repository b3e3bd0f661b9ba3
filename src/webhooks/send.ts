/**
 * One webhook attempt: a signed POST after the Standard Webhooks specification, signed by the
 * reference library (`standardwebhooks`), through a connection whose DNS answer passed the SSRF
 * guard, never following a redirect, bounded by WEBHOOK_TIMEOUT from connect to the end of the answer.
 */
import http from 'node:http';
import https from 'node:https';
import { Webhook } from 'standardwebhooks';
import { guardedLookup, refuseHost, ForbiddenTargetError } from './ssrf.ts';

/** What an attempt sends. */
export interface WebhookRequest {
  url: string;
  /** The event id: `webhook-id`, the same on every retry. */
  id: string;
  /** Signing time (`webhook-timestamp`). */
  timestamp: Date;
  /** The JSON body, exactly as signed. */
  body: string;
  /** Signers of the `whsec_…` secrets (see {@link signersFor}): the current one, plus a rotated-out one during its grace period. */
  signers: readonly WebhookSigner[];
}

/** The outcome of an attempt: ok only for a 2xx answer. */
export interface WebhookResult {
  ok: boolean;
  statusCode: number | null;
  error?: string;
}

/** Longest answer body read (the rest is discarded): receivers' answers are only diagnostics. */
const MAX_ANSWER_BYTES = 512;

/**
 * Kept-alive connections, one pool per protocol and SSRF setting. Reusing a socket skips no check: the
 * guard runs in the DNS lookup of every new connection, and a kept socket stays connected to the
 * address that passed it. Without reuse every delivery paid a TCP (and TLS) handshake, a third of a
 * login's cost with three endpoints (issue 10's bench). Idle sockets close after 4 s, before the
 * usual 5 s keep-alive of Node servers, so a delivery rarely meets a socket the receiver just closed.
 */
const agents = new Map<string, http.Agent>();
function agentFor(protocol: string, allowPrivate: boolean): http.Agent {
  const key = `${protocol}${allowPrivate}`;
  let agent = agents.get(key);
  if (!agent) {
    const options = { keepAlive: true, timeout: 4000, maxFreeSockets: 16, lookup: guardedLookup(allowPrivate) as never };
    agent = protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
    agents.set(key, agent);
  }
  return agent;
}

/**
 * An endpoint's URL as the log and the audit log show it: scheme, host and port, with `/…` for a path
 * or query. Receivers often carry a secret there (chat services' incoming hooks, `?token=`), and logs
 * travel further than the endpoint's own record, which only admins read through the API.
 */
export function urlForLogs(url: string): string {
  try {
    const u = new URL(url);
    return u.pathname === '/' && !u.search ? `${u.origin}/` : `${u.origin}/…`;
  } catch {
    return '(not a URL)';
  }
}

/** Signs with one secret (the reference library's `Webhook`). */
export type WebhookSigner = Pick<Webhook, 'sign'>;

/** Signers for `whsec_…` secrets; built once per endpoint and batch, not per delivery. */
export function signersFor(secrets: readonly string[]): WebhookSigner[] {
  return secrets.map((s) => new Webhook(s));
}

/** The `webhook-signature` header: one `v1,<base64>` per secret, separated by spaces. */
export function signatureHeader(signers: readonly WebhookSigner[], id: string, timestamp: Date, body: string): string {
  return signers.map((s) => s.sign(id, timestamp, body)).join(' ');
}

/** Sends one attempt; never throws (every failure is a result). */
export function sendWebhook(req: WebhookRequest, options: { timeoutMs: number; allowPrivate: boolean }): Promise<WebhookResult> {
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return Promise.resolve({ ok: false, statusCode: null, error: 'invalid URL' });
  }
  // Node skips `lookup` for IP literals, so those are checked here.
  const refused = refuseHost(url.hostname, options.allowPrivate);
  if (refused) return Promise.resolve({ ok: false, statusCode: null, error: `refused: ${refused}` });
  const client = url.protocol === 'https:' ? https : http;
  const headers = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(req.body)),
    'user-agent': 'Twofold-Webhooks/1',
    'webhook-id': req.id,
    'webhook-timestamp': String(Math.floor(req.timestamp.getTime() / 1000)),
    'webhook-signature': signatureHeader(req.signers, req.id, req.timestamp, req.body),
  };
  const deadline = Date.now() + options.timeoutMs;
  const attempt = (pooled: boolean): Promise<WebhookResult> => new Promise<WebhookResult>((resolve) => {
    let settled = false;
    const finish = (r: WebhookResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const request = client.request(url, {
      method: 'POST',
      headers,
      agent: pooled ? agentFor(url.protocol, options.allowPrivate) : false,
      // Every new connection of the pool resolves through the guard.
      lookup: guardedLookup(options.allowPrivate) as never,
    });
    const timer = setTimeout(() => {
      finish({ ok: false, statusCode: null, error: `timeout: no complete answer within ${options.timeoutMs} ms` });
      request.destroy();
    }, Math.max(0, deadline - Date.now()));
    request.on('error', (err: NodeJS.ErrnoException) => {
      // A kept-alive socket the receiver closed just as we reused it (the request most likely never
      // reached it; if it did, the resend carries the same webhook-id).
      // Once more on a fresh connection (Node's documented pattern), within the same deadline.
      if (pooled && request.reusedSocket && err.code === 'ECONNRESET' && !settled) {
        settled = true;
        clearTimeout(timer);
        return resolve(attempt(false));
      }
      if (err instanceof ForbiddenTargetError) return finish({ ok: false, statusCode: null, error: `refused: ${err.message}` });
      finish({ ok: false, statusCode: null, error: err.code && !err.message.includes(err.code) ? `${err.code}: ${err.message}` : err.message });
    });
    request.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < MAX_ANSWER_BYTES) chunks.push(c);
        size += c.length;
      });
      res.on('error', (err) => finish({ ok: false, statusCode: status, error: err.message }));
      res.on('end', () => {
        if (status >= 200 && status < 300) return finish({ ok: true, statusCode: status });
        const text = Buffer.concat(chunks).toString('utf8').slice(0, MAX_ANSWER_BYTES).replace(/\s+/g, ' ').trim();
        const redirect = status >= 300 && status < 400 ? ' (redirects are not followed)' : '';
        finish({ ok: false, statusCode: status, error: `HTTP ${status}${redirect}${text ? `: ${text}` : ''}` });
      });
    });
    request.end(req.body);
  });
  return attempt(true);
}
