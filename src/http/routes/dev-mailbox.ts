/**
 * The development mailbox: shows the mails in the outbox table. It exposes one-time codes and links,
 * so the app registers it only outside production and only without SMTP_URL; it is kept out of OpenAPI.
 */
import { isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';
// Brings in @fastify/swagger's typing of `schema.hide` (type-only: nothing is loaded at run time).
import type {} from '@fastify/swagger';
import type { Config } from '../../config.ts';
import type { Database } from '../../db/database.ts';
import { listRecent, type OutboxRow } from '../../db/repositories/outbox.ts';
import { escapeHtml } from '../../mail/templates.ts';

/** Options of devMailboxRoutes. */
export interface DevMailboxRoutesOptions {
  db: Database;
  /** Host names the mailbox answers under: PUBLIC_URL's and the loopback names (see {@link servedHostnames}). */
  hostnames: ReadonlySet<string>;
  /** config.env; when given as 'production', registration throws (a second guard besides the app's own check). */
  env?: Config['env'];
}

/** Mails listed by default and at most (`?limit=`). */
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 500;

/** One mail as `/dev/mailbox.json` lists it. */
export interface DevMailboxEntry {
  id: string;
  kind: string;
  to: string;
  subject: string;
  text: string;
  html: string;
  created_at: string;
  sent_at: string | null;
}

function parseLimit(raw: unknown): number {
  const n = typeof raw === 'string' && /^\d{1,4}$/.test(raw) ? Number(raw) : DEFAULT_LIMIT;
  return Math.min(Math.max(n, 1), MAX_LIMIT);
}

function status(row: OutboxRow): string {
  if (row.sent_at) return 'delivered';
  if (row.failed_at) return `failed after ${row.attempts} attempts`;
  if (row.attempts > 0) return `retrying (attempt ${row.attempts} failed)`;
  return 'queued';
}

function renderPage(rows: OutboxRow[]): string {
  const items = rows
    .map(
      (row) =>
        `<article class="mail">
<h2>${escapeHtml(row.subject)}</h2>
<dl>
<dt>To</dt><dd>${escapeHtml(row.to_address)}</dd>
<dt>Kind</dt><dd>${escapeHtml(row.kind)}</dd>
<dt>Queued</dt><dd><time datetime="${row.created_at.toISOString()}">${row.created_at.toISOString()}</time></dd>
<dt>Status</dt><dd>${escapeHtml(status(row))}${row.last_error ? ` — ${escapeHtml(row.last_error)}` : ''}</dd>
</dl>
<pre>${escapeHtml(row.text_body)}</pre>
</article>`,
    )
    .join('\n');
  // No inline script or style: the content security policy forbids them.
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<title>Development mailbox</title>
<link rel="stylesheet" href="/assets/style.css">
</head>
<body>
<main class="dev-mailbox">
<h1>Development mailbox</h1>
<p>Mails are not sent while <code>SMTP_URL</code> is unset; they are shown here instead, newest first. Reload to see new ones.
The same list as JSON: <a href="/dev/mailbox.json">/dev/mailbox.json</a>.</p>
${rows.length === 0 ? '<p>No mail yet.</p>' : items}
</main>
</body>
</html>
`;
}

function toEntry(row: OutboxRow): DevMailboxEntry {
  return {
    id: row.id,
    kind: row.kind,
    to: row.to_address,
    subject: row.subject,
    text: row.text_body,
    html: row.html_body,
    created_at: row.created_at.toISOString(),
    sent_at: row.sent_at ? row.sent_at.toISOString() : null,
  };
}

/** PUBLIC_URL's host name and the loopback names: the names a development instance is reached under. */
export function servedHostnames(publicUrl: string): Set<string> {
  return new Set([new URL(publicUrl).hostname.toLowerCase(), 'localhost', '127.0.0.1', '[::1]']);
}

/** The host name of a Host header (`name:port`, `[v6]:port`); undefined when it is missing or not a host. */
function hostnameOf(host: string | undefined): string | undefined {
  if (!host) return undefined;
  try {
    return new URL(`http://${host}`).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

/** Registers `GET /dev/mailbox` (HTML page) and `GET /dev/mailbox.json` (the same mails as JSON). */
export async function devMailboxRoutes(app: FastifyInstance, opts: DevMailboxRoutesOptions): Promise<void> {
  // The page shows live one-time codes and reset links: in production it would hand over accounts.
  if (opts.env === 'production') throw new Error('the development mailbox must never be registered in production');
  // Only under the instance's own names. A page on another site whose name the attacker re-points at
  // 127.0.0.1 (DNS rebinding) is same-origin with that name, not with ours, and its requests carry its
  // name in Host: answered, they would hand it every reset link the mailbox shows.
  // An IP address in Host is no rebinding (the page's origin would be that address): allowed, so the
  // mailbox of an instance listening beyond loopback is reachable by its address.
  app.addHook('onRequest', async (request, reply) => {
    const name = hostnameOf(request.headers.host);
    if (!name || !(opts.hostnames.has(name) || isIP(name.replace(/^\[|\]$/g, '')))) return reply.callNotFound();
  });
  app.get('/dev/mailbox', { schema: { hide: true } }, async (request, reply) => {
    const rows = await listRecent(opts.db, parseLimit((request.query as Record<string, unknown> | undefined)?.limit));
    // Codes and links are on this page: never let a shared cache keep it.
    return reply.header('cache-control', 'no-store').type('text/html; charset=utf-8').send(renderPage(rows));
  });

  app.get('/dev/mailbox.json', { schema: { hide: true } }, async (request, reply) => {
    const rows = await listRecent(opts.db, parseLimit((request.query as Record<string, unknown> | undefined)?.limit));
    return reply.header('cache-control', 'no-store').send(rows.map(toEntry));
  });
}
