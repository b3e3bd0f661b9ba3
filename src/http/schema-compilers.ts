/**
 * Route-schema compilers shared by every app this process builds. Fastify makes new compilers for each
 * instance, so each app compiles every route's validator (ajv) and response serializer
 * (fast-json-stringify) again: ~100 ms of CPU per app. A server builds one app, so this changes nothing
 * there; the test suites build one per test (hundreds), and a shared compiler reuses what an earlier
 * app compiled. A compiled function depends only on its schema's JSON (and the options, fixed below),
 * so reuse is keyed by that text (Fastify hands some schemas over as fresh copies), with the schema
 * object itself as a faster first key.
 */
import AjvCompiler from '@fastify/ajv-compiler';
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import type { FastifyServerOptions } from 'fastify';

type Factories = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>;
type Compiler = (route: { schema: object }) => unknown;

/**
 * Keywords the serializer does not read: documentation (the OpenAPI document's descriptions and
 * examples) and `enum` (fast-json-stringify writes a string as a string whatever values it may take).
 * Left out of a response schema before it is compiled, the error responses of every route, which
 * differ only in the codes they document, share one compiled serializer: compiled one by one, they
 * took the first app of each process from about 0.6 to 1.1 s of CPU.
 */
const NOT_SERIALIZED = new Set(['description', 'examples', 'example', 'enum', 'title']);

function forSerializer(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(forSerializer);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    // `properties` holds member names, not keywords: a member called "title" or "description" stays.
    if (key === 'properties' && value && typeof value === 'object') {
      out[key] = Object.fromEntries(Object.entries(value).map(([name, member]) => [name, forSerializer(member)]));
    } else if (!NOT_SERIALIZED.has(key)) out[key] = forSerializer(value);
  }
  return out;
}

/** Wraps a compiler factory so that each schema object is compiled once per process (per option set). */
function memoised(factory: (externals: unknown, options: unknown) => Compiler, prepare: (schema: object) => object = (schema) => schema): (externals: unknown, options: unknown) => Compiler {
  const byOptions = new Map<string, { byObject: WeakMap<object, unknown>; byText: Map<string, unknown> }>();
  return (externals, options) => {
    const compile = factory(externals, options);
    const key = JSON.stringify([externals, options]);
    let cache = byOptions.get(key);
    if (!cache) byOptions.set(key, (cache = { byObject: new WeakMap(), byText: new Map() }));
    const { byObject, byText } = cache;
    return (route) => {
      let fn = byObject.get(route.schema);
      if (fn !== undefined) return fn;
      const schema = prepare(route.schema);
      const text = JSON.stringify(schema);
      fn = byText.get(text);
      if (fn === undefined) {
        fn = compile({ ...route, schema });
        byText.set(text, fn);
      }
      byObject.set(route.schema, fn);
      return fn;
    };
  };
}

/** For Fastify's `schemaController.compilersFactory`. */
export const sharedCompilers = {
  // AjvCompiler's selector keeps one ajv instance per (external schemas, options): shared here across apps.
  buildValidator: memoised(AjvCompiler() as never),
  buildSerializer: memoised(SerializerSelector() as never, (schema) => forSerializer(schema) as object),
} as unknown as Factories;
