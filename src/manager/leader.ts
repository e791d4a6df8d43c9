/**
 * Leader election among managers over the Store interface (any backend; etcd for real HA). The leader
 * holds `/ferry/manager/leader` {name, url, since}, created only when absent and bound to a lease it
 * keeps alive; standbys watch the key and campaign when it is deleted (resignation or lease expiry).
 *
 * Safety: etcd expires a lease no earlier than TTL after the last keep-alive it received, and that
 * keep-alive was sent after the leader noted the time, so a leader that has not renewed for 2/3 TTL
 * (by its own clock) steps down — stops its controllers — before any standby can take the key.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Store } from '../store/index.ts';
import { defineErrors, isFerryError } from '../errors/index.ts';

/** The store key the leader holds. */
export const LEADER_KEY = '/ferry/manager/leader';

/** Response header naming the leader's API URL on a NOT_LEADER answer (the client follows it). */
export { LEADER_HEADER } from '../client/index.ts';

/** Errors of the manager's election; clients follow `details.leader` of NOT_LEADER. */
export const leaderErrors = defineErrors({
  NOT_LEADER: { status: 503, message: 'manager {name} is standing by; the leader is {leaderText} — send the request there' },
});

/** What the leader key holds. */
export interface LeaderInfo {
  /** Manager name, e.g. `m1`. */
  readonly name: string;
  /** The leader's API URL, which standbys hand to clients. */
  readonly url: string;
  /** When it became leader (ISO 8601). */
  readonly since: string;
}

/** How to take part in an election. */
export interface ElectionOptions {
  readonly store: Store;
  /** This manager's name (unique among the managers). */
  readonly name: string;
  /** This manager's API URL as clients reach it. */
  readonly url: string;
  /** Lease TTL in seconds: the longest a dead leader keeps the role. Default 5. */
  readonly ttlSeconds?: number;
  /** Called on becoming leader, before the role counts as held; start acting here. */
  readonly onElected: () => Promise<void> | void;
  /** Called on losing or giving up the role; stop acting here (awaited before the key is released). */
  readonly onDeposed: (reason: string) => Promise<void> | void;
  readonly log?: (msg: string) => void;
}

/** Pause before retrying after the store failed, so a down store is not hammered. */
const RETRY_MS = 500;

/** One manager's part in the election; `start` it, `stop` it to resign. */
export class LeaderElection {
  private readonly ttlMs: number;
  private readonly stopper = new AbortController();
  private running: Promise<void> | undefined;
  private leading = false;
  private known: LeaderInfo | undefined;
  /** Ends the current term when called (set while leading). */
  private endTerm: ((reason: string) => void) | undefined;

  constructor(private readonly o: ElectionOptions) {
    this.ttlMs = (o.ttlSeconds ?? 5) * 1000;
  }

  /** True while this manager holds the role (and has not stepped down). */
  isLeader(): boolean {
    return this.leading;
  }

  /** The leader as last seen (this manager when leading), or undefined while there is none. */
  leader(): LeaderInfo | undefined {
    return this.known;
  }

  /** Starts campaigning in the background. */
  start(): void {
    this.running ??= this.run();
  }

  /** Resigns: stops acting (onDeposed), releases the key so a standby takes over at once, and stops watching. */
  async stop(): Promise<void> {
    this.stopper.abort();
    this.endTerm?.('resigned');
    await this.running;
  }

  private log(msg: string): void {
    this.o.log?.(`election ${this.o.name}: ${msg}`);
  }

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    while (!signal.aborted) {
      try {
        const lease = await this.campaign();
        if (lease !== undefined) await this.lead(lease);
        else await this.follow();
      } catch (e) {
        if (signal.aborted) break;
        this.log(`store trouble, retrying: ${(e as Error).message}`);
        await sleep(RETRY_MS, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  /** Tries to take the key; returns the lease when this manager won, undefined when another holds it. */
  private async campaign(): Promise<{ id: number; sentAt: number } | undefined> {
    const sentAt = performance.now();
    const lease = await this.o.store.grantLease(this.ttlMs / 1000);
    const info: LeaderInfo = { name: this.o.name, url: this.o.url, since: new Date().toISOString() };
    try {
      await this.o.store.create(LEADER_KEY, info, { lease: lease.id });
      this.known = info;
      return { id: lease.id, sentAt };
    } catch (e) {
      await this.o.store.revokeLease(lease.id).catch(() => undefined);
      if (isFerryError(e, 'STORE_EXISTS')) return undefined;
      throw e;
    }
  }

  /** Holds the role until the lease cannot be renewed in time, the key is lost, or `stop`. */
  private async lead(lease: { id: number; sentAt: number }): Promise<void> {
    let lastRenewed = lease.sentAt;
    const ended = new Promise<string>((resolve) => { this.endTerm = resolve; });
    const end = (reason: string): void => this.endTerm?.(reason);
    if (this.stopper.signal.aborted) end('resigned');
    // Renew several times per TTL; each success counts from when it was sent, never from the answer.
    const renew = setInterval(() => {
      const sentAt = performance.now();
      this.o.store.keepAlive(lease.id).then(
        () => { lastRenewed = Math.max(lastRenewed, sentAt); },
        (e: unknown) => {
          if (isFerryError(e, 'STORE_LEASE_NOT_FOUND')) end('the lease expired');
          else this.log(`keep-alive failed: ${(e as Error).message}`);
        },
      );
    }, Math.max(50, this.ttlMs / 4));
    const watchdog = setInterval(() => {
      if (performance.now() - lastRenewed > (this.ttlMs * 2) / 3) end(`no lease renewal for ${Math.round((performance.now() - lastRenewed) / 1000 * 10) / 10} s`);
    }, Math.max(20, this.ttlMs / 20));
    const keyWatch = new AbortController();
    void this.watchOwnKey(lease.id, keyWatch.signal, end);
    this.leading = true;
    this.log('elected');
    let reason = 'resigned';
    try {
      await this.o.onElected();
      reason = await ended;
    } finally {
      clearInterval(renew);
      clearInterval(watchdog);
      keyWatch.abort();
      this.leading = false;
      this.endTerm = undefined;
      this.log(`stepping down: ${reason}`);
      try {
        await this.o.onDeposed(reason);
      } finally {
        if (this.known?.name === this.o.name) this.known = undefined;
        // Revoking deletes the key, so a standby takes over without waiting for the TTL.
        await this.o.store.revokeLease(lease.id).catch((e: unknown) => this.log(`could not release the lease: ${(e as Error).message}`));
      }
    }
  }

  /** Ends the term when the key is deleted or taken by another (an admin, or a lease lost unnoticed). */
  private async watchOwnKey(leaseId: number, signal: AbortSignal, end: (reason: string) => void): Promise<void> {
    try {
      const kv = await this.o.store.get<LeaderInfo>(LEADER_KEY);
      if (!kv || kv.lease !== leaseId) return end('the leader key is no longer ours');
      for await (const e of this.o.store.watch<LeaderInfo>(LEADER_KEY, { afterRevision: kv.modRevision, signal })) {
        if (e.kv.key !== LEADER_KEY) continue;
        if (e.type === 'delete' || e.kv.lease !== leaseId) return end('the leader key is no longer ours');
      }
    } catch (e) {
      // Renewals still guard the term; a broken watch alone is no reason to step down.
      if (!signal.aborted) this.log(`watch of the leader key failed: ${(e as Error).message}`);
    }
  }

  /** Follows the current leader until its key is deleted (then the caller campaigns again). */
  private async follow(): Promise<void> {
    const kv = await this.o.store.get<LeaderInfo>(LEADER_KEY);
    if (!kv) return;
    if (kv.value.name === this.o.name) {
      // Our own key from a term we already stepped down from (its release failed): release it now.
      if (kv.lease !== 0) await this.o.store.revokeLease(kv.lease);
      else await this.o.store.delete(LEADER_KEY, kv.modRevision).catch(() => undefined);
      return;
    }
    if (this.known?.name !== kv.value.name) this.log(`standing by; leader is ${kv.value.name} at ${kv.value.url}`);
    this.known = kv.value;
    for await (const e of this.o.store.watch<LeaderInfo>(LEADER_KEY, { afterRevision: kv.modRevision, signal: this.stopper.signal })) {
      if (e.kv.key !== LEADER_KEY) continue;
      if (e.type === 'delete') {
        this.known = undefined;
        return;
      }
      this.known = e.kv.value;
    }
  }
}

/** The NOT_LEADER error a standby answers with, naming the leader when one is known. */
export function notLeader(name: string, leader: LeaderInfo | undefined): Error {
  return leaderErrors.NOT_LEADER({
    name,
    leader: leader?.url ?? null,
    leaderName: leader?.name ?? null,
    leaderText: leader ? `${leader.name} at ${leader.url}` : 'not elected yet (retry shortly)',
  });
}
