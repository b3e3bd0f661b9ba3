/**
 * The container files stay valid and keep their promises (no engine can build the image here;
 * scripts/container-smoke.sh runs its steps in CI): compose.yaml parses and starts Twofold after
 * healthy PostgreSQL and Redis, with named volumes and a mail catcher; the Dockerfile is multi-stage,
 * compiled, production-only, non-root and health-checked; secrets stay out of the build context.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { readCompose, serviceEnvironment } from '../../scripts/compose-env.ts';
import { ROOT } from '../helpers/root.ts';

const SECRETS = { TOTP_ENCRYPTION_KEY: `k1:${Buffer.alloc(32, 1).toString('base64')}`, TOKEN_HASH_KEY: Buffer.alloc(32, 2).toString('base64') };

test('compose.yaml: Twofold, PostgreSQL, Redis and a mail catcher; health-based start order; named volumes', () => {
  const compose = readCompose(join(ROOT, 'compose.yaml'));
  assert.deepEqual(Object.keys(compose.services).sort(), ['mailpit', 'postgres', 'redis', 'twofold']);
  const twofold = compose.services.twofold!;
  assert.ok(twofold.build, 'built from this repository');
  assert.deepEqual(twofold.depends_on, { postgres: { condition: 'service_healthy' }, redis: { condition: 'service_healthy' }, mailpit: { condition: 'service_started' } });
  for (const name of ['postgres', 'redis']) assert.ok(compose.services[name]!.healthcheck?.test, `${name} has a healthcheck`);
  const declared = Object.keys(compose.volumes ?? {});
  const used = Object.values(compose.services).flatMap((s) => (s.volumes ?? []).map((v) => v.split(':')[0]!));
  assert.deepEqual(used.sort(), declared.sort(), 'every volume is a declared named volume, and every declared one is used');
  assert.ok(used.length >= 3);
});

test('compose.yaml: only Twofold\'s own port is published to the network; the mail catcher (every reset link) to this machine only', () => {
  const compose = readCompose(join(ROOT, 'compose.yaml'));
  assert.deepEqual(compose.services.twofold!.ports, ['8000:8000']);
  assert.deepEqual(compose.services.mailpit!.ports, ['127.0.0.1:8025:8025']);
  for (const name of ['postgres', 'redis']) assert.equal(compose.services[name]!.ports, undefined, `${name} publishes no port`);
});

test('compose.yaml: the twofold environment is a valid production configuration once .env holds the secrets', () => {
  const compose = readCompose(join(ROOT, 'compose.yaml'));
  assert.throws(() => serviceEnvironment(compose, 'twofold', {}), /TOTP_ENCRYPTION_KEY/, 'refuses to start without the secrets');
  const env = serviceEnvironment(compose, 'twofold', SECRETS);
  assert.equal(env.HOST, '0.0.0.0');
  assert.equal(env.NODE_ENV, 'production');
  assert.match(env.DATABASE_URL!, /@postgres:5432\//);
  assert.match(env.REDIS_URL!, /^redis:\/\/redis:/);
  assert.match(env.SMTP_URL!, /^smtp:\/\/mailpit:/);
  const config = loadConfig(env);
  assert.equal(config.env, 'production');
  assert.equal(config.host, '0.0.0.0');
  assert.equal(config.adminApiKey, undefined, 'ADMIN_API_KEY is off unless .env sets it');
  assert.equal(config.jwtKeyRotationIntervalSeconds, undefined);
  assert.equal(loadConfig(serviceEnvironment(compose, 'twofold', { ...SECRETS, JWT_KEY_ROTATION_INTERVAL: '30d' })).jwtKeyRotationIntervalSeconds, 30 * 86400);
});

test('Dockerfile: multi-stage, compiled build, production dependencies only, non-root, HEALTHCHECK on /healthz, HOST=0.0.0.0', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const stages = [...dockerfile.matchAll(/^FROM (\S+)(?: AS (\S+))?$/gm)];
  assert.ok(stages.length >= 2, 'multi-stage');
  assert.ok(stages.every((s) => s[1]!.startsWith('node:20')), 'Node 20 in every stage');
  assert.match(dockerfile, /RUN npm run build/);
  assert.match(dockerfile, /npm ci --omit=dev/);
  const final = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  assert.doesNotMatch(final, /COPY (--from=build )?(\/app\/)?src/, 'no sources in the image');
  assert.match(final, /COPY --from=deps \/app\/node_modules/, 'node_modules from the production-only stage');
  const user = /^USER (\S+)$/m.exec(final)?.[1];
  assert.ok(user && user !== 'root' && user !== '0', 'runs as a non-root user');
  assert.match(final, /HOST=0\.0\.0\.0/);
  assert.match(final.replace(/\\\n/g, ' '), /^HEALTHCHECK .*CMD .*\/healthz/m);
  assert.match(final, /^CMD \["node", .*"dist\/server\.js"\]$/m);
});

test('the image starts the service with the node flags and allocator setting of `npm run start:prod` (the memory settings the bench measured)', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
  const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  const words = scripts['start:prod']!.split(/\s+/);
  const env = words.slice(0, words.indexOf('node'));
  assert.deepEqual(cmd, words.slice(words.indexOf('node')));
  assert.ok(cmd.includes('--heap-growing-percent=50'), 'old space grows by half its live size between full collections');
  assert.deepEqual(env, ['MALLOC_ARENA_MAX=2'], 'glibc keeps two malloc arenas, not one per thread');
  const envBlock = /^ENV ((?:.*\\\n)*.*)$/m.exec(dockerfile)![1]!.replace(/\\\n/g, ' ');
  for (const assignment of env) assert.ok(envBlock.split(/\s+/).includes(assignment), `the image sets ${assignment}`);
});

test('.dockerignore keeps secrets, data, dependencies and builds out of the context', () => {
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
  for (const entry of ['node_modules', 'dist', '.test-build', 'data', '.env', '*.pem', '.git']) assert.ok(ignored.includes(entry), entry);
});

test('npm run build starts from an empty dist/: a migration renamed or removed in the sources must not stay in the build', () => {
  const build = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.build ?? '';
  // The compile and the copies of migrations and assets come after the removal (a renamed migration
  // left in dist/ ran beside its new name: "column already exists", and the instance did not start).
  const removal = build.indexOf("rmSync('dist'");
  assert.ok(removal >= 0, build);
  assert.ok(removal < build.indexOf('tsc ') && removal < build.indexOf('src/db/migrations'), build);
});
