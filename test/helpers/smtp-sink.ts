/** A real SMTP server for end-to-end tests: listens on loopback, accepts everything, keeps each parsed message. */
import type { AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';

/** One accepted message: the envelope recipients and the parsed mail. */
export interface ReceivedMail {
  rcptTo: string[];
  mail: ParsedMail;
}

/** A running sink. */
export interface SmtpSink {
  readonly port: number;
  readonly received: ReceivedMail[];
  /** Messages whose envelope names `address` (case-insensitive). */
  to(address: string): ReceivedMail[];
  close(): Promise<void>;
}

/** Starts a sink on 127.0.0.1:`port` (0: any free port). No TLS, no authentication needed. */
export async function startSmtpSink(port = 0): Promise<SmtpSink> {
  const received: ReceivedMail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((mail) => {
          received.push({ rcptTo: session.envelope.rcptTo.map((a) => a.address), mail });
          callback();
        })
        .catch((err: Error) => callback(err));
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.server.address() as AddressInfo;
  let closed = false;
  return {
    port: address.port,
    received,
    to: (a) => received.filter((r) => r.rcptTo.some((x) => x.toLowerCase() === a.toLowerCase())),
    close: () => {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export { freePort } from './net.ts';

/** The first http(s) link carrying a `token=` parameter in a text. */
export function tokenLink(text: string | undefined): URL {
  const m = /https?:\/\/[^\s"<>]+[?&]token=[A-Za-z0-9_%-]+/.exec(text ?? '');
  if (!m) throw new Error('no link with a token in the mail');
  return new URL(m[0]);
}

/** A server that refuses every recipient, naming it in brackets and bare, as Postfix-like servers do. */
export async function startRefusingServer(t: { after: (fn: () => Promise<void>) => void }): Promise<number> {
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onRcptTo(address, _session, callback) {
      const err = new Error(`5.1.1 <${address.address}>: Recipient address rejected: User unknown in virtual mailbox table (${address.address})`) as Error & { responseCode: number };
      err.responseCode = 550;
      callback(err);
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.server.address() as AddressInfo).port;
}
