/** Everything a service needs, passed in explicitly so tests can hand in PGlite, a frozen clock, a capturing mailer. */
import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { PasswordHasher } from './crypto/password.ts';
import type { KeyStore } from './crypto/jwt.ts';
import type { SecretBox } from './crypto/secret-box.ts';
import type { TokenHasher } from './crypto/token-hash.ts';
import type { Database } from './db/database.ts';
import type { MailTransport } from './mail/types.ts';
import type { Limiter } from './security/limiter.ts';

export interface Deps {
  readonly config: Config;
  readonly db: Database;
  readonly clock: Clock;
  readonly keys: KeyStore;
  readonly secretBox: SecretBox;
  readonly tokenHasher: TokenHasher;
  readonly passwords: PasswordHasher;
  readonly limiter: Limiter;
  /** Transport the outbox worker delivers through (SMTP, or the development mailbox). */
  readonly mailTransport: MailTransport;
  readonly logger: Logger;
}
