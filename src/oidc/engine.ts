/**
 * The OpenID provider, built on first use. oidc-provider and what it brings (Koa, its JOSE and mime
 * tables: about 180 modules, 6 MB of live heap and 9 MB of resident memory under load) are not loaded
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
  #loaded = false;
  #builds = 0;

  constructor(private readonly build: () => Promise<Engine>) {}

  /** True once the engine has been built in this process. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** How many builds were started (one while they succeed). */
  get builds(): number {
    return this.#builds;
  }

  get(): Promise<Engine> {
    this.#building ??= (async () => {
      this.#builds++;
      try {
        const engine = await this.build();
        this.#loaded = true;
        return engine;
      } catch (err) {
        this.#building = undefined;
        throw err;
      }
    })();
    return this.#building;
  }
}
