/**
 * Node label constraints: the small language a request uses to say where it may run.
 *
 *   key==value   the node has label `key` with exactly this value
 *   key!=value   the node lacks label `key`, or has another value
 *   key          the node has label `key` (any value)
 *   !key         the node lacks label `key`
 *
 * Spaces around the operator are allowed. `region` and `zone` are short for the topology labels
 * `ferry.io/region` and `ferry.io/zone`. Keys are label keys (letters, digits, `.` `_` `-` `/`,
 * starting and ending with a letter or digit); values are letters, digits, `.` `_` `-`.
 */
import { schedulerErrors } from './errors.ts';
import { TOPOLOGY_LABELS } from './types.ts';

/** One parsed constraint. */
export interface Constraint {
  /** As written, for explanations. */
  readonly source: string;
  /** The node label it reads (shorthands expanded). */
  readonly key: string;
  readonly op: 'eq' | 'ne' | 'exists' | 'absent';
  /** The value compared (eq and ne only). */
  readonly value?: string;
}

const KEY = /^[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$/;
const VALUE = /^[A-Za-z0-9._-]{1,63}$/;
const OPERATOR = /^(.*?)\s*(==|!=)\s*(.*)$/s;
const FORMS = 'write key==value, key!=value, key (label present) or !key (label absent)';
const SHORTHAND: Readonly<Record<string, string>> = { region: TOPOLOGY_LABELS.region, zone: TOPOLOGY_LABELS.zone };

const bad = (value: string, hint: string): Error => schedulerErrors.SCHEDULER_BAD_CONSTRAINT({ value, hint });

function checkKey(source: string, key: string): string {
  if (key === '') throw bad(source, `the label key is missing; ${FORMS}`);
  if (/[=!<>~]/.test(key)) throw bad(source, `unknown operator; ${FORMS}`);
  if (!KEY.test(key)) throw bad(source, `label key "${key}" may hold letters, digits, ".", "_", "-" and "/", and must start and end with a letter or digit (at most 253 characters)`);
  return SHORTHAND[key] ?? key;
}

/** Parses one constraint, or throws FERRY_ERR_SCHEDULER_BAD_CONSTRAINT saying what is wrong. */
export function parseConstraint(source: string): Constraint {
  const s = source.trim();
  if (s === '') throw bad(source, `it is empty; ${FORMS}`);
  if (s.startsWith('!') && !s.startsWith('!=')) {
    const key = s.slice(1).trim();
    if (/[=!]/.test(key)) throw bad(source, '"!" negates a bare key only; write key!=value to exclude one value');
    return { source, key: checkKey(source, key), op: 'absent' };
  }
  const m = OPERATOR.exec(s);
  if (!m) {
    if (/(^|[^=!<>])=($|[^=])/.test(s)) throw bad(source, 'use == for equality (a single = is not an operator)');
    return { source, key: checkKey(source, s), op: 'exists' };
  }
  const [, rawKey = '', op, value = ''] = m;
  const key = checkKey(source, rawKey);
  if (value === '') throw bad(source, `the value after ${op} is missing; to require that the label be absent write !${rawKey}`);
  if (/[=!<>~]/.test(value)) throw bad(source, `one operator per constraint; ${FORMS}`);
  if (!VALUE.test(value)) throw bad(source, `value "${value}" may hold letters, digits, ".", "_" and "-" (at most 63 characters)`);
  return { source, key, op: op === '==' ? 'eq' : 'ne', value };
}

/** Parses every constraint of a request; the first bad one throws. */
export function parseConstraints(sources: readonly string[]): Constraint[] {
  return sources.map(parseConstraint);
}

/** True when a node with `labels` satisfies `c`. */
export function satisfies(c: Constraint, labels: Readonly<Record<string, string>>): boolean {
  const v = labels[c.key];
  switch (c.op) {
    case 'eq': return v === c.value;
    case 'ne': return v !== c.value;
    case 'exists': return v !== undefined;
    case 'absent': return v === undefined;
  }
}

/** Why a node with `labels` fails `c`, in words. */
export function violation(c: Constraint, labels: Readonly<Record<string, string>>): string {
  const v = labels[c.key];
  const has = v === undefined ? `the node has no label ${c.key}` : `the node's ${c.key} is ${v}`;
  return `constraint ${c.source.trim()} not met: ${has}`;
}
