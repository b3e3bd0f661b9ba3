/** Pre-validation for routes whose body is optional (tokens may come as Bearer or cookie instead). */
import type { FastifyRequest, RouteOptions } from 'fastify';

/** Validates a missing body as `{}`: Fastify would otherwise check `undefined` against the object schema. */
export async function emptyBodyAsObject(request: FastifyRequest): Promise<void> {
  if (request.body === undefined || request.body === null) request.body = {};
}

/** The mark of such a route in its schema; @fastify/swagger copies every `x-` key of a route schema to its operation. */
const OPTIONAL_BODY = 'x-optional-body';

/**
 * onRoute hook: a route that takes {@link emptyBodyAsObject} marks its schema. @fastify/swagger declares
 * every body schema `required: true` (a plain Fastify route does need one); {@link documentOptionalBody}
 * then corrects the document from the mark.
 */
export function markOptionalBody(route: RouteOptions): void {
  const hooks = route.preValidation;
  const list: unknown[] = Array.isArray(hooks) ? hooks : hooks ? [hooks] : [];
  if (!route.schema || !list.includes(emptyBodyAsObject)) return;
  route.schema = { ...route.schema, [OPTIONAL_BODY]: true } as RouteOptions['schema'];
}

/** For the document's transform: a marked operation's body is optional, and the mark itself is left out. */
export function documentOptionalBody(operation: { requestBody?: { required?: boolean }; [OPTIONAL_BODY]?: unknown }): void {
  if (!operation[OPTIONAL_BODY]) return;
  delete operation[OPTIONAL_BODY];
  if (operation.requestBody) operation.requestBody.required = false;
}
