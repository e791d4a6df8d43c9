/**
 * The one error type Ferry throws. Each component keeps its own table of codes (see `defineErrors`);
 * a code is stable across versions, maps to one HTTP status, and carries a message template.
 */

/** Shape of one row in a component's error table. */
export interface ErrorSpec {
  /** HTTP status the API answers with. */
  readonly status: number;
  /** Message template; `{name}` placeholders are filled from the params. */
  readonly message: string;
}

/** An error with a stable code, an HTTP status, optional details, and a cause. */
export class FerryError extends Error {
  /** Stable machine-readable code, e.g. `FERRY_ERR_NOT_FOUND`. */
  readonly code: string;
  /** HTTP status this error maps to. */
  readonly status: number;
  /** Structured facts about the failure (names, limits, hints). */
  readonly details: Record<string, unknown>;

  constructor(code: string, status: number, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FerryError';
    this.code = code;
    this.status = status;
    this.details = details;
  }

  /** The JSON body the API sends for this error. */
  toJSON(): { code: string; message: string; details: Record<string, unknown> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** Fills `{name}` placeholders in a template from params. */
function render(template: string, params: Record<string, unknown>): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => (k in params ? String(params[k]) : `{${k}}`));
}

/** A factory per code: `errors.NOT_FOUND({ kind: 'container', name })` → FerryError. */
export type ErrorFactories<T extends Record<string, ErrorSpec>> = {
  [K in keyof T]: (params?: Record<string, unknown>, cause?: unknown) => FerryError;
} & { readonly table: T };

/** Turns a component's error table into factories; codes become `FERRY_ERR_<KEY>`. */
export function defineErrors<T extends Record<string, ErrorSpec>>(table: T): ErrorFactories<T> {
  const out: Record<string, unknown> = { table };
  for (const [key, spec] of Object.entries(table)) {
    out[key] = (params: Record<string, unknown> = {}, cause?: unknown) =>
      new FerryError(`FERRY_ERR_${key}`, spec.status, render(spec.message, params), params, cause === undefined ? undefined : { cause });
  }
  return out as ErrorFactories<T>;
}

/** True when `e` is a FerryError with the given code (full `FERRY_ERR_…` or short key). */
export function isFerryError(e: unknown, code?: string): e is FerryError {
  if (!(e instanceof FerryError)) return false;
  return code === undefined || e.code === code || e.code === `FERRY_ERR_${code}`;
}

export { failpoint, failpointEnabled, failpointThrow } from './failpoints.ts';
