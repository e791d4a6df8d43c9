/**
 * Service discovery inside the cluster: each agent answers DNS on its container networks' gateways
 * for the names of services and containers on the asking container's network, and nothing else.
 */
export { startNameService, wantedListeners } from './names.ts';
export type { NameService, NameServiceOptions, NameSourcesAt } from './names.ts';
export { buildNameTable, lookupName, ZONE } from './table.ts';
export type { NameSources, NameTable } from './table.ts';
export { DnsServer } from './server.ts';
export type { Listener, DnsServerOptions } from './server.ts';
export { RESOLV_CONF_FILE, RESOLV_CONF_TARGET, hookGateway, resolvConf, resolvConfMount } from './resolv.ts';
