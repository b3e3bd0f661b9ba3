/**
 * The shape of a RabbitMQ direct reply-to name, checked before anything is published to one. The
 * broker decodes such a name itself when a message is published to it, and a name it cannot decode
 * (`amq.rabbitmq.reply-to.g1h2AA==.abc`, `amq.rabbitmq.reply-to.a.b`) makes it close the publisher's
 * whole connection with 541 INTERNAL_ERROR instead of dropping the message.
 */

/** The prefix the broker intercepts; no client can declare a queue named with it. */
export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

/** Standard base64 with padding, as the broker writes both parts of the name. */
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function isCanonicalBase64(text: string): boolean {
  if (!BASE64.test(text)) return false;
  const bytes = Buffer.from(text, 'base64');
  // Node decodes leniently; only a string that encodes back to itself is what the broker wrote.
  return bytes.length > 0 && bytes.toString('base64') === text;
}

/**
 * Whether `name` has the shape of a direct reply-to name the broker hands out:
 * `amq.rabbitmq.reply-to.<base64>.<base64>` (the caller channel's encoded pid, then a key). What the
 * first part encodes is the broker's own business and has changed between versions, so it is not
 * decoded here: a name of this shape can still be one the broker rejects (a node it does not know),
 * and the responder acknowledges a request before replying for that reason. This check only keeps
 * names no broker would hand out away.
 */
export function isDirectReplyToName(name: string): boolean {
  if (!name.startsWith(`${DIRECT_REPLY_TO}.`)) return false;
  const parts = name.slice(DIRECT_REPLY_TO.length + 1).split('.');
  return parts.length === 2 && isCanonicalBase64(parts[0]!) && isCanonicalBase64(parts[1]!);
}
