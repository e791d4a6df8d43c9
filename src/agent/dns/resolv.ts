/** The /etc/resolv.conf Ferry gives its containers, and the bind mount that puts it there. */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BindMount, Hook } from '../runtime/index.ts';
import { ZONE } from './table.ts';

/** Where a container's resolv.conf is kept on the host: this file name in the container's directory. */
export const RESOLV_CONF_FILE = 'resolv.conf';
/** Where it appears inside the container. */
export const RESOLV_CONF_TARGET = '/etc/resolv.conf';

/**
 * The resolv.conf of a container whose gateway is `gateway`: the agent's DNS answers there, and
 * `search ferry` lets `web` and `web.ferry` both work. Short timeouts: the server is on the host.
 */
export function resolvConf(gateway: string): string {
  return [
    '# Written by Ferry: the node agent answers at the gateway for services and containers of this network.',
    `nameserver ${gateway}`,
    `search ${ZONE}`,
    'options timeout:1 attempts:3',
    '',
  ].join('\n');
}

/**
 * The gateway the network's prestart hook gives the container (its `gateway=` argument, see
 * network/hook.ts): the address the agent answers DNS on. Undefined for a container without a network.
 */
export function hookGateway(prestart: readonly Hook[]): string | undefined {
  for (const h of prestart) {
    const arg = (h.args ?? []).find((a) => a.startsWith('gateway='));
    if (arg) return arg.slice('gateway='.length);
  }
  return undefined;
}

/**
 * Writes the container's resolv.conf into its directory (in the agent's data dir, so the file goes
 * with the container and a restore target writes its own before CRIU binds it — runc maps bind
 * mounts by destination) and returns the read-only bind mount; none without a network, or when a
 * volume already provides /etc/resolv.conf.
 */
export async function resolvConfMount(o: { containerDir: string; prestart: readonly Hook[]; volumeTargets: readonly string[] }): Promise<BindMount | undefined> {
  const gateway = hookGateway(o.prestart);
  if (gateway === undefined || o.volumeTargets.some((t) => t.replace(/\/+$/, '') === RESOLV_CONF_TARGET)) return undefined;
  const file = join(o.containerDir, RESOLV_CONF_FILE);
  const text = resolvConf(gateway);
  // Rewritten only when it changed: a running container's bind mount keeps the same inode either way.
  if ((await readFile(file, 'utf8').catch(() => undefined)) !== text) await writeFile(file, text, { mode: 0o644 });
  return { source: file, destination: RESOLV_CONF_TARGET, readOnly: true };
}
