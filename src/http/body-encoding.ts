/**
 * Request bodies are UTF-8 text, or they are refused. Fastify's own JSON parser and @fastify/formbody
 * decode every body as UTF-8 whatever its Content-Type says and turn bytes that are not UTF-8 into
 * U+FFFD. A password sent as ISO-8859-1 was then stored changed, and any two non-ASCII letters compared
 * equal. Here a charset other than UTF-8 (or US-ASCII) is 415 `unsupported_media_type`, and bytes that
 * are not what the body declares are 400 `malformed_request`.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { isAscii } from 'node:buffer';
import type { FastifyInstance, FastifyRequest, preParsingAsyncHookHandler } from 'fastify';
import { AppError } from '../errors.ts';

/** Charset labels that mean UTF-8 text: UTF-8 itself (and its common alias utf8), and its subset US-ASCII. */
const UTF8_LABELS = new Set(['utf-8', 'utf8']);
const ASCII_LABEL = 'us-ascii';

/**
 * The charset parameters of a Content-Type header (RFC 9110 §8.3), lower-cased and unquoted. A header
 * may carry more than one; each must be acceptable.
 */
function charsets(contentType: string): string[] {
  const found: string[] = [];
  const param = /;[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^; \t]*))/g;
  for (const m of contentType.matchAll(param)) {
    if (m[1]!.toLowerCase() !== 'charset') continue;
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!;
    found.push(value.toLowerCase());
  }
  return found;
}

/** Whether the body is declared US-ASCII; throws 415 for a charset that is not UTF-8 or US-ASCII. */
function declaredAscii(request: FastifyRequest): boolean {
  const declared = charsets(request.headers['content-type'] ?? '');
  for (const charset of declared) {
    if (!UTF8_LABELS.has(charset) && charset !== ASCII_LABEL) {
      throw new AppError('unsupported_media_type', { detail: 'Send the body as UTF-8 (charset=utf-8, or no charset at all).' });
    }
  }
  return declared.length > 0 && declared.every((c) => c === ASCII_LABEL);
}

/** One decoder for every JSON body: a one-shot decode() keeps no state between calls. */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

function notUtf8(): AppError {
  return new AppError('malformed_request', { detail: 'The request body is not valid UTF-8.' });
}

function notAscii(): AppError {
  return new AppError('malformed_request', { detail: 'The request body is declared US-ASCII but is not.' });
}

/**
 * Whether valid JSON text holds a number literal a double cannot hold: one JSON.parse turns into
 * Infinity (`1e999`, stored as null) or into 0 although its digits are not all zero (`1e-400`). The
 * value sent would be lost. A plain scan (strings skipped), linear in the text.
 */
export function hasUnrepresentableNumber(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c /* \ */) i++;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let end = i + 1;
      while (end < text.length && /[0-9.eE+-]/.test(text[end]!)) end++;
      const literal = text.slice(i, end);
      const value = Number(literal);
      if (!Number.isFinite(value)) return true;
      // The digits before any exponent decide whether the number meant is zero.
      if (value === 0 && /[1-9]/.test(literal.split(/[eE]/)[0]!)) return true;
      i = end - 1;
    }
  }
  return false;
}

/**
 * Replaces Fastify's JSON parser with one that reads the body as bytes and decodes it strictly. The
 * body limit is the app's (Fastify's default for a parser), the checks after decoding are Fastify's own
 * parser's (an empty body, invalid JSON, the __proto__ and constructor.prototype refusals), and the
 * media type stays application/json alone (`+json` types were 415 before and still are).
 *
 * A UTF-8 byte order mark is skipped: RFC 8259 §8.1 lets a parser ignore one, and Fastify's parser
 * did (secure-json-parse strips it), so a client that sends one keeps working.
 */
export function installJsonBodyParser(app: FastifyInstance): void {
  const { onProtoPoisoning = 'error', onConstructorPoisoning = 'error' } = app.initialConfig;
  const parseText = app.getDefaultJsonParser(onProtoPoisoning, onConstructorPoisoning);
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const bytes = body as Buffer;
    let text: string;
    try {
      if (declaredAscii(request) && !isAscii(bytes)) throw notAscii();
      // `ignoreBOM: false` (the default) is what drops a leading byte order mark.
      try {
        text = STRICT_UTF8.decode(bytes);
      } catch {
        throw notUtf8();
      }
    } catch (err) {
      done(err as Error, undefined);
      return;
    }
    void parseText(request, text, (err, value) => {
      if (err) done(err, undefined);
      // Found in the text, while the digits are at hand: once parsed, one too small is a plain 0.
      else if (hasUnrepresentableNumber(text)) done(new AppError('malformed_request', { detail: 'The request body holds a number too large or too small to be represented.' }), undefined);
      else done(null, value);
    });
  });
}

function strayPercent(): AppError {
  return new AppError('malformed_request', { detail: 'The form body has a "%" that does not start an escape (send it as %25).' });
}

const isHex = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
const hexValue = (b: number) => (b <= 0x39 ? b - 0x30 : (b | 0x20) - 0x61 + 10);

/**
 * Passes a form body through unchanged and fails (400 malformed_request) at the first thing a form
 * parser would silently alter: bytes that are not UTF-8 (they became U+FFFD), a `%` that does not start
 * a two-digit escape, or escapes whose bytes are not UTF-8 (fast-querystring then keeps the whole
 * value undecoded, so `%FC` and `%25FC` were the same password). Streaming: nothing is held back.
 */
class FormEncodingCheck extends Transform {
  /** What Fastify compares with Content-Length and the body limit (the bytes received, all passed on). */
  receivedEncodedLength = 0;
  private readonly raw = new TextDecoder('utf-8', { fatal: true });
  private readonly escaped = new TextDecoder('utf-8', { fatal: true });
  /** Hex digits still expected by the escape being read (0: none is being read). */
  private pending = 0;
  private high = 0;
  /** Whether escaped bytes were fed to `escaped` since the last non-escape byte. */
  private inRun = false;

  constructor(private readonly ascii: boolean) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.receivedEncodedLength += chunk.length;
    try {
      if (this.ascii && !isAscii(chunk)) throw notAscii();
      this.raw.decode(chunk, { stream: true });
      this.scanEscapes(chunk);
    } catch (err) {
      callback(err instanceof AppError ? err : notUtf8());
      return;
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.raw.decode();
      if (this.pending) throw strayPercent();
      this.endRun();
    } catch (err) {
      callback(err instanceof AppError ? err : notUtf8());
      return;
    }
    callback();
  }

  private scanEscapes(chunk: Buffer): void {
    for (const b of chunk) {
      if (this.pending) {
        if (!isHex(b)) throw strayPercent();
        if (--this.pending === 1) this.high = hexValue(b);
        else {
          this.decodeEscaped(Uint8Array.of(this.high * 16 + hexValue(b)));
          this.inRun = true;
        }
      } else if (b === 0x25 /* % */) this.pending = 2;
      else this.endRun();
    }
  }

  /** A run of escapes ends: its bytes must have been complete UTF-8 (decode() throws otherwise). */
  private endRun(): void {
    if (!this.inRun) return;
    this.inRun = false;
    this.decodeEscaped();
  }

  private decodeEscaped(bytes?: Uint8Array): void {
    try {
      this.escaped.decode(bytes, { stream: bytes !== undefined });
    } catch {
      throw new AppError('malformed_request', { detail: 'The form body has percent-escapes that are not UTF-8.' });
    }
  }
}

/**
 * Whether the request carries a body Fastify will parse: not for GET and HEAD (whose bodies it never
 * parses), and otherwise Transfer-Encoding or a Content-Length above 0 (RFC 9112 §6.3; `00` is 0).
 */
function hasBody(request: FastifyRequest): boolean {
  if (request.method === 'GET' || request.method === 'HEAD') return false;
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && Number(length) > 0);
}

function isForm(request: FastifyRequest): boolean {
  return (request.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase() === 'application/x-www-form-urlencoded';
}

/**
 * preParsing hook of the whole app for form bodies, whose parser (@fastify/formbody, registered by the
 * login and introspection routes and the hosted pages) is not ours to replace. Other bodies pass as they are.
 */
export const checkFormEncoding: preParsingAsyncHookHandler = async (request, _reply, payload) => {
  // Fastify runs the hook for every request; one without a body (a GET with a stray form
  // Content-Type) has nothing to check, and was refused 415 for its charset.
  if (!isForm(request) || !hasBody(request)) return payload;
  const check = new FormEncodingCheck(declaredAscii(request));
  // A failing source (the client went away) fails the check stream, which Fastify is reading; the
  // request itself is never destroyed from here, so an answer can still be written.
  payload.on('error', (err) => check.destroy(err));
  return payload.pipe(check);
};
