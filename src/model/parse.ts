/** Parsers for the flags users type (`-p`, `-v`, `-e`, `--restart`), shared by CLI and API. */
import type { RestartPolicy, Volume } from './container.ts';
import { modelErrors } from './errors.ts';

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/** True when `name` is a valid container/node name (DNS-ish, ≤ 63 chars). */
export function isValidName(name: string): boolean {
  return NAME_RE.test(name);
}

/**
 * Parses `/host/dir:/in/container[:ro|:rw]` (a bind mount) or `name:/in/container[:ro|:rw]` (a named
 * volume: local to the host, or with `shared` on the cluster's shared volume root).
 */
export function parseVolume(text: string, o: { shared?: boolean } = {}): Volume {
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3) throw modelErrors.BAD_VOLUME({ value: text, hint: o.shared ? 'use name:/container/path[:ro]' : 'use /host/path:/container/path[:ro] or name:/container/path[:ro]' });
  const [source, target, mode] = parts as [string, string, string | undefined];
  const named = !source.startsWith('/');
  if (named && !isValidName(source)) throw modelErrors.BAD_VOLUME({ value: text, hint: 'a volume name is letters, digits, "_", "." and "-" (a host path must be absolute)' });
  if (o.shared && !named) throw modelErrors.BAD_VOLUME({ value: text, hint: 'a shared volume is named, not a host path: use name:/container/path' });
  if (!target.startsWith('/')) throw modelErrors.BAD_VOLUME({ value: text, hint: 'the container path must be absolute' });
  if (target.split('/').includes('..') || source.split('/').includes('..')) throw modelErrors.BAD_VOLUME({ value: text, hint: 'paths may not contain ..' });
  if (mode !== undefined && mode !== 'ro' && mode !== 'rw') throw modelErrors.BAD_VOLUME({ value: text, hint: 'the mode is ro or rw' });
  return { source, target, readOnly: mode === 'ro', ...(named ? { kind: o.shared ? 'shared' as const : 'local' as const } : {}) };
}

/** Parses `no`, `always`, `on-failure`, `on-failure:5`. */
export function parseRestart(text: string): RestartPolicy {
  const m = /^(no|always|on-failure)(?::(\d+))?$/.exec(text.trim());
  if (!m || (m[2] !== undefined && m[1] !== 'on-failure')) throw modelErrors.BAD_RESTART({ value: text });
  return { policy: m[1] as RestartPolicy['policy'], maxRetries: m[2] === undefined ? 0 : Number(m[2]) };
}

/** Checks `KEY=VALUE`. */
export function parseEnv(text: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(text)) throw modelErrors.BAD_ENV({ value: text });
  return text;
}

/** Throws BAD_NAME unless `name` is a valid object name. */
export function checkName(name: string): string {
  if (!isValidName(name)) {
    throw modelErrors.BAD_NAME({ value: name, hint: 'start with a letter or digit; then letters, digits, _ . -; at most 63 characters' });
  }
  return name;
}

const ADJECTIVES = ['brisk', 'calm', 'keen', 'bold', 'swift', 'quiet', 'sunny', 'steady', 'lucid', 'nimble'];
const NOUNS = ['otter', 'heron', 'ferry', 'harbor', 'keel', 'tide', 'mast', 'buoy', 'anchor', 'reef'];

/** A readable random name like `swift-heron-3f2a`. */
export function randomName(): string {
  const pick = (a: string[]): string => a[Math.floor(Math.random() * a.length)]!;
  return `${pick(ADJECTIVES)}-${pick(NOUNS)}-${Math.floor(Math.random() * 0x10000).toString(16).padStart(4, '0')}`;
}
