/**
 * Node networking: a Linux bridge, one veth per container plumbed by an OCI prestart hook into the
 * network namespace runc creates, node-local addresses, and published ports through a userland proxy.
 */
import { LocalNodeNetwork } from './node-network.ts';
import type { NodeNetworkOptions } from './node-network.ts';

export type { AttachOptions, Attachment, NodeNetwork, PortMapping } from './types.ts';
export { netErrors } from './errors.ts';
export { DEFAULT_HOST_IP, checkPortMapping, formatPortMapping } from './port-spec.ts';
export { DEFAULT_BRIDGE, DEFAULT_SUBNET, LocalNodeNetwork, bringUp } from './node-network.ts';
export type { NodeNetworkOptions } from './node-network.ts';
export { LocalAddressAllocator } from './ipam.ts';
export type { AddressAllocator, Lease } from './ipam.ts';
export type { PortStats, PublishedPorts } from './ports.ts';
export type { Subnet } from './ipv4.ts';
export { macFromIp, parseSubnet } from './ipv4.ts';
export { vethName } from './hook.ts';
export type { OverlayConfig } from './overlay.ts';
export type { HookMode } from './hook.ts';

/** Creates the node network (call `init()` before the first attach). */
export function createNodeNetwork(options: NodeNetworkOptions): LocalNodeNetwork {
  return new LocalNodeNetwork(options);
}
