/**
 * The OpenID provider, built on first use. oidc-provider and what it brings (Koa, its JOSE and mime
 * tables: about 180 modules, 6 MB of live heap, 8–9 MB of V8 heap under load) are not loaded
 * by an instance until an OpenID request, an interaction or the session-end sweep needs them, so an
 * instance that serves only the JSON API never carries them.
 */
import type Provider from 'oidc-provider';
import type { RingSigningKey } from './signing-key.ts';

/** The built provider, its signing key (refresh before each request) and its Node request handler. */
export interface Engine {
  readonly provider: Provider;
  readonly signingKey: RingSigningKey;
  readonly callback: ReturnType<Provider['callback']>;
}

/** Builds the engine once, however many requests ask for it at the same time; a failed build is tried again by the next caller. */
export class LazyEngine {
  #building: Promise<Engine> | undefined;
  #built: Engine | undefined;
  #builds = 0;

  constructor(private readonly build: () => Promise<Engine>) {}

  /** True once the engine has been built in this process. */
  get loaded(): boolean {
    return this.#built !== undefined;
  }

  /** How many builds were started (one while they succeed; the tests read it). */
  get builds(): number {
    return this.#builds;
  }

  get(): Promise<Engine> {
    this.#building ??= (async () => {
      this.#builds++;
      try {
        this.#built = await this.build();
        return this.#built;
      } catch (err) {
        this.#building = undefined;
        throw err;
      }
    })();
    return this.#building;
  }
}
