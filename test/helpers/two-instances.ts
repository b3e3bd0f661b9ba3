/**
 * Two app instances on one database, as a cluster runs them: with Redis, separate PostgreSQL pools
 * and separate limiters sharing one Redis; without, one PGlite and one in-process limiter shared.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import type { Config } from '../../src/config.ts';
import type { Limiter } from '../../src/security/limiter.ts';
import { FlexibleLimiter } from '../../src/security/limiter-flexible.ts';
import { createMemoryLimiter } from '../../src/security/limiter-memory.ts';
import { createRedisClient, createRedisLimiter } from '../../src/security/limiter-redis.ts';
import { buildTestApp, type TestApp } from './app.ts';
import { createTestDatabase, type DatabaseKind } from './pg-database.ts';

/** True when both servers are configured: the cluster variants of a test are registered only then. */
export const CLUSTER = Boolean(process.env.REDIS_URL && process.env.DATABASE_URL);

/** Two instances on one database of `kind`, built with `env`; `limiters` makes each instance's limiter. */
export async function twoInstances(t: TestContext, kind: DatabaseKind, env: Record<string, string>, limiters: () => Promise<[Limiter, Limiter]>): Promise<[TestApp, TestApp]> {
  const database = await createTestDatabase(kind);
  t.after(() => database.cleanup());
  const [la, lb] = await limiters();
  t.after(() => Promise.all([la.close(), lb.close()]));
  const a = await buildTestApp(t, database.db, { env, limiter: la });
  // A second pool on PostgreSQL; PGlite has one connection, so there both apps share it.
  const b = await buildTestApp(t, await database.connectAgain(), { env, limiter: lb });
  return [a, b];
}

/** Two limiters sharing one Redis under a namespace of their own (each with its own client, like two processes). */
export async function redisLimiters(config: Config): Promise<[Limiter, Limiter]> {
  const prefix = `twofold-test:${randomUUID()}`;
  const make = async () => {
    const l = createRedisLimiter(config, { client: createRedisClient(process.env.REDIS_URL ?? ''), keyPrefix: prefix });
    // Until connected the insurance counters (per process) would answer; these tests are about Redis.
    assert.ok(l instanceof FlexibleLimiter);
    await l.ready();
    return l;
  };
  return [await make(), await make()];
}

/** One in-process limiter used by both apps (closed once per app: close is idempotent for memory). */
export async function sharedMemoryLimiter(config: Config): Promise<[Limiter, Limiter]> {
  const l = createMemoryLimiter(config);
  return [l, l];
}

/** A scenario run against two instances. */
export type TwoInstanceScenario = [name: string, run: (a: TestApp, b: TestApp) => Promise<void>];

/**
 * Declares each scenario on a shared in-process limiter and one PGlite, and — only when both servers
 * are configured, so no skipped tests appear — on two Redis limiters and two PostgreSQL pools.
 */
export function describeOnTwoInstances(name: string, env: Record<string, string>, config: Config, scenarios: readonly TwoInstanceScenario[]): void {
  void describe(name, () => {
    for (const [title, run] of scenarios) {
      void test(`${title} [shared in-process limiter, one PGlite]`, async (t) => {
        const [a, b] = await twoInstances(t, 'pglite', env, () => sharedMemoryLimiter(config));
        await run(a, b);
      });
    }
    if (!CLUSTER) return;
    for (const [title, run] of scenarios) {
      void test(`${title} [two Redis limiters, two PostgreSQL pools]`, async (t) => {
        const [a, b] = await twoInstances(t, 'postgres', env, () => redisLimiters(config));
        await run(a, b);
      });
    }
  });
}
