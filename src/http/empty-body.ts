/** Pre-validation for routes whose body is optional (tokens may come as Bearer or cookie instead). */
import type { FastifyRequest } from 'fastify';

/** Validates a missing body as `{}`: Fastify would otherwise check `undefined` against the object schema. */
export async function emptyBodyAsObject(request: FastifyRequest): Promise<void> {
  if (request.body === undefined || request.body === null) request.body = {};
}
