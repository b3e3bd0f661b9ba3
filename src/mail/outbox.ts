/**
 * Queuing mail: services call enqueueMail inside the transaction of the change that causes the mail,
 * so the mail exists if and only if the change committed. Delivery is the outbox worker's job.
 */
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { newId } from '../crypto/random.ts';
import type { Queryable } from '../db/database.ts';
import * as outbox from '../db/repositories/outbox.ts';
import { renderMail, type MailRequest } from './templates.ts';

/** What enqueueMail needs from the service's deps. */
export interface EnqueueDeps {
  readonly config: Pick<Config, 'productName' | 'publicUrl'>;
  readonly clock: Clock;
}

/** Renders a mail and inserts it into the outbox in the caller's transaction; returns the outbox id. */
export async function enqueueMail(tx: Queryable, deps: EnqueueDeps, mail: MailRequest): Promise<string> {
  // Rendering happens now, not at delivery: the mail says what was true when the change committed,
  // and a template error fails the change's transaction instead of a mail silently never going out.
  const rendered = renderMail(mail.kind, mail.data, { productName: deps.config.productName, publicUrl: deps.config.publicUrl });
  const id = newId();
  await outbox.insert(tx, {
    id,
    kind: mail.kind,
    to: mail.to,
    subject: rendered.subject,
    text: rendered.text,
    html: rendered.html,
    createdAt: deps.clock(),
  });
  return id;
}
