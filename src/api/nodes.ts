/** Node views: a node is Ready while its alive key (bound to a heartbeat lease) exists. */
import type { Store } from '../store/index.ts';
import type { Container, Node } from '../model/index.ts';
import { keys, keyName } from '../model/index.ts';
import type { NodeView } from '../client/index.ts';

/** Every node with its state and the number of containers placed on it. */
export async function listNodes(store: Store): Promise<NodeView[]> {
  const [nodes, alive, containers] = await Promise.all([
    store.list<Node>(keys.nodes), store.list(keys.alive), store.list<Container>(keys.containers),
  ]);
  const up = new Set(alive.items.map((kv) => keyName(kv.key)));
  const count = new Map<string, number>();
  for (const { value } of containers.items) {
    const n = value.placement?.node;
    if (n) count.set(n, (count.get(n) ?? 0) + 1);
  }
  return nodes.items.map(({ value }) => ({
    node: value,
    state: up.has(value.metadata.name) ? 'Ready' : 'NotReady',
    containers: count.get(value.metadata.name) ?? 0,
  }));
}
