/** Node liveness: each registered agent holds a store lease; its alive key exists while it heartbeats. */
import type { Store } from '../store/index.ts';
import { put } from '../store/index.ts';
import { isFerryError } from '../errors/index.ts';
import { keys } from '../model/index.ts';

/** Tracks the lease of each node's alive key. */
export class NodeLeases {
  private readonly byNode = new Map<string, number>();
  private readonly store: Store;
  private readonly ttl: number;

  private readonly aliveKey: (name: string) => string;

  /** `aliveKey` names the lease-bound key (default: the node's alive key; entry points have their own). */
  constructor(store: Store, ttlSeconds: number, aliveKey: (name: string) => string = keys.nodeAlive) {
    this.store = store;
    this.ttl = ttlSeconds;
    this.aliveKey = aliveKey;
  }

  /** Renews the node's lease, or grants a new one and writes the alive key (after a manager restart). */
  async beat(node: string): Promise<void> {
    const id = this.byNode.get(node);
    if (id !== undefined) {
      try {
        await this.store.keepAlive(id);
        return;
      } catch (e) {
        if (!isFerryError(e, 'STORE_LEASE_NOT_FOUND')) throw e;
      }
    }
    const lease = await this.store.grantLease(this.ttl);
    this.byNode.set(node, lease.id);
    await put(this.store, this.aliveKey(node), { node, since: new Date().toISOString() }, { lease: lease.id });
  }

  /** Ends the lease now (a clean shutdown): the alive key goes at once. */
  async end(node: string): Promise<void> {
    const id = this.byNode.get(node);
    this.byNode.delete(node);
    if (id !== undefined) await this.store.revokeLease(id);
  }
}
