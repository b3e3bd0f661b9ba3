/**
 * A real HTTP webhook receiver for tests: it verifies every request with the reference library
 * (`standardwebhooks`) exactly as a receiving service would, records what came, and answers as told
 * (2xx, an error status, a redirect, slowly, or never).
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

/** One request as received. */
export interface ReceivedWebhook {
  id: string;
  timestamp: string;
  signature: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The parsed body when the signature verified with the receiver's secret(s), else undefined. */
  verified: { type: string; timestamp: string; data: Record<string, unknown> } | undefined;
}

/** How the receiver answers the next requests. */
export type ReceiverMode =
  | { kind: 'status'; status: number; body?: string }
  | { kind: 'slow'; delayMs: number }
  | { kind: 'hang' }
  | { kind: 'redirect'; location: string };

export interface WebhookReceiver {
  url: string;
  received: ReceivedWebhook[];
  mode: ReceiverMode;
  /** The secrets the receiver verifies with (set after registration, like a receiving service). */
  secrets: string[];
  /** Resolves when `n` requests have arrived in total. */
  waitFor(n: number): Promise<void>;
  close(): Promise<void>;
}

/** Verifies `body` and headers with any of `secrets`; undefined when none verifies. */
export function verifyWith(secrets: readonly string[], body: string, headers: Record<string, string>) {
  for (const s of secrets) {
    try {
      return new Webhook(s).verify(body, headers) as ReceivedWebhook['verified'];
    } catch {
      // try the next secret
    }
  }
  return undefined;
}

export async function startReceiver(path = '/hook'): Promise<WebhookReceiver> {
  const hanging = new Set<() => void>();
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const r: WebhookReceiver = {
    url: '',
    received: [],
    mode: { kind: 'status', status: 204 },
    secrets: [],
    waitFor(n) {
      if (r.received.length >= n) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    async close() {
      for (const h of hanging) h();
      server.closeAllConnections();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const h = {
        'webhook-id': String(req.headers['webhook-id'] ?? ''),
        'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
        'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
      };
      r.received.push({ id: h['webhook-id'], timestamp: h['webhook-timestamp'], signature: h['webhook-signature'], headers: req.headers, body, verified: verifyWith(r.secrets, body, h) });
      for (const w of waiters.filter((x) => r.received.length >= x.n)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
      const mode = r.mode;
      if (mode.kind === 'status') res.writeHead(mode.status).end(mode.body ?? (mode.status >= 400 ? 'receiver says no' : ''));
      else if (mode.kind === 'redirect') res.writeHead(302, { location: mode.location }).end();
      else if (mode.kind === 'slow') setTimeout(() => res.writeHead(200).end('ok'), mode.delayMs);
      else hanging.add(() => res.destroy());
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  return r;
}
