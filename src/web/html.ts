/**
 * Escape-by-default HTML building for the hosted pages: every interpolated value is escaped unless it
 * is already `SafeHtml` produced by the `html` tag, so a page cannot forget to escape user input.
 */
import { escapeHtml } from '../html-escape.ts';

export { escapeHtml };

/** A fragment of markup that is known to be safe to emit as is. */
export class SafeHtml {
  constructor(readonly value: string) {}

  toString(): string {
    return this.value;
  }
}

function render(value: unknown): string {
  if (value === undefined || value === null || value === false) return '';
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

/**
 * Tagged template that escapes its interpolations. `undefined`, `null` and `false` render as nothing,
 * arrays are concatenated, nested `html` fragments are kept as they are.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? '');
  return new SafeHtml(out);
}
