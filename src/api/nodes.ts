/** Node views: a node is Ready while its alive key (bound to a heartbeat lease) exists. */
import type { Store } from '../store/index.ts';
import type { Container, Node, NodeHealth } from '../model/index.ts';
import { keys, keyName } from '../model/index.ts';
import type { NodeView } from '../client/index.ts';

/** Every node with its state and the number of containers placed on it. */
export async function listNodes(store: Store): Promise<NodeView[]> {
  const [nodes, alive, containers, health] = await Promise.all([
    store.list<Node>(keys.nodes), store.list(keys.alive), store.list<Container>(keys.containers), store.list<NodeHealth>(keys.health),
  ]);
  const up = new Set(alive.items.map((kv) => keyName(kv.key)));
  const healthOf = new Map(health.items.map((kv) => [keyName(kv.key), kv.value]));
  const count = new Map<string, number>();
  for (const { value } of containers.items) {
    const n = value.placement?.node;
    if (n) count.set(n, (count.get(n) ?? 0) + 1);
  }
  return nodes.items.map(({ value }) => {
    const h = healthOf.get(value.metadata.name);
    // The health controller's word, once it has one; before that (a lease that just lapsed), NotReady.
    const state: NodeView['state'] = h && (h.state !== 'Ready' || up.has(value.metadata.name)) ? h.state : up.has(value.metadata.name) ? 'Ready' : 'NotReady';
    return {
      node: value,
      state,
      ...(h && h.state !== 'Ready' ? { reason: `${h.reason} (since ${h.since})` } : {}),
      containers: count.get(value.metadata.name) ?? 0,
    };
  });
}
